# syntax=docker/dockerfile:1
#
# GPU image of the YOLO endpoint for Cloud Run (NVIDIA L4).
#
# Cloud Run's L4 driver is 535.x, i.e. CUDA 12.2. The torch wheel on PyPI for 2.14.1 is a CUDA 13
# build, which that driver cannot run, so torch and torchvision come from PyTorch's CUDA 12.6
# index (cu126 works on any 12.x driver >= 525 through CUDA minor-version compatibility).
#
#   docker build -t yolo-endpoint .                       # weights fetched from GCS at cold start
#   docker build --build-arg WEIGHTS=baked -t yolo-endpoint .   # bakes ./weights/best.pt in
#
# The command is `python -m function`: gunicorn (one worker that owns the model and the GPU,
# THREADS request threads) through functions-framework on 0.0.0.0:$PORT; it finishes in-flight
# requests and exits on SIGTERM well inside Cloud Run's 10 s.

ARG PYTHON_IMAGE=python:3.11.15-slim-bookworm
# none: MODEL is set at deploy time (gs://... downloaded at cold start). baked: ./weights/best.pt
# is copied to /opt/weights/best.pt and MODEL points there (fastest cold start, bigger image).
ARG WEIGHTS=none

FROM ${PYTHON_IMAGE} AS build
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126
ARG TORCH_VERSION=2.14.1+cu126
ARG TORCHVISION_VERSION=0.29.1+cu126
ARG OPENCV_HEADLESS_VERSION=5.0.0.93
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:$PATH
# CUDA 12 builds first, in their own layer; the project's pins (torch==2.14.1, torchvision==0.29.1)
# are then already satisfied by 2.14.1+cu126 / 0.29.1+cu126, so pip keeps them.
RUN python -m venv /opt/venv \
 && pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" \
        "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}"
WORKDIR /src
COPY pyproject.toml ./
COPY function ./function
# ultralytics pulls opencv-python, which needs libGL and X11 libraries a slim image lacks; the
# headless build of the same version has no such dependency.
RUN pip install --no-cache-dir . \
 && pip uninstall --yes opencv-python \
 && pip install --no-cache-dir --no-deps --force-reinstall "opencv-python-headless==${OPENCV_HEADLESS_VERSION}" \
 && python -c "import cv2, torch, function.server; assert torch.version.cuda.startswith('12.'), torch.version.cuda"

FROM ${PYTHON_IMAGE} AS serve
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /home/app --create-home --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/app \
    PORT=8080 \
    MODEL_CACHE_DIR=/tmp/model-cache \
    YOLO_CONFIG_DIR=/tmp/Ultralytics \
    LD_LIBRARY_PATH=/usr/local/nvidia/lib64:/usr/local/nvidia/lib
WORKDIR /home/app
USER 10001:10001
EXPOSE 8080
STOPSIGNAL SIGTERM
CMD ["python", "-m", "function"]

FROM serve AS weights-none

FROM serve AS weights-baked
COPY weights/best.pt /opt/weights/best.pt
ENV MODEL=/opt/weights/best.pt

# The final stage is one of the two above, picked by the WEIGHTS build argument; hadolint cannot
# see through the variable, so DL3006 (untagged base image) does not apply to this line.
# hadolint ignore=DL3006
FROM weights-${WEIGHTS}
