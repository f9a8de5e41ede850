# syntax=docker/dockerfile:1
#
# The YOLO endpoint for Cloud Run, in two flavours from one file (build argument ACCELERATOR):
#
#   gpu (default)  CUDA 12 PyTorch for the NVIDIA L4. Cloud Run's L4 driver is 535.x, i.e. CUDA 12.2;
#                  the torch wheel on PyPI for 2.14.1 is a CUDA 13 build that driver cannot run, so
#                  torch and torchvision come from PyTorch's CUDA 12.6 index (cu126 works on any 12.x
#                  driver >= 525 through CUDA minor-version compatibility). Also TensorRT for CUDA 12
#                  (Ultralytics' TensorRT export goes through ONNX: onnx and onnxslim are project
#                  dependencies, so both images have them).
#   cpu            CPU-only PyTorch (no CUDA libraries: several GB smaller, so a CPU region's cold
#                  start pulls far less). ONNX Runtime and OpenVINO come with the project itself.
#
# The service picks CUDA or the CPU by what it finds (torch.cuda.is_available()).
#
#   docker build -t yolo-gpu .                                   # weights fetched from GCS at cold start
#   docker build --build-arg ACCELERATOR=cpu -t yolo-cpu .
#   docker build --build-arg WEIGHTS=baked -t yolo-gpu-baked .   # bakes ./weights/best.pt in
#
# The command is `python -m function`, the service on 0.0.0.0:$PORT; it finishes in-flight requests
# and exits on SIGTERM well inside Cloud Run's 10 s.

ARG PYTHON_IMAGE=python:3.11.15-slim-bookworm
# gpu or cpu: which torch-* stage the build starts from.
ARG ACCELERATOR=gpu
# none: MODEL is set at deploy time (gs://... downloaded at cold start). baked: ./weights/best.pt
# is copied to /opt/weights/best.pt and MODEL points there (fastest cold start, bigger image).
ARG WEIGHTS=none

# ---- torch for the L4: CUDA 12 builds and TensorRT ------------------------------------------------
FROM ${PYTHON_IMAGE} AS torch-gpu
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126
ARG TORCH_VERSION=2.14.1+cu126
ARG TORCHVISION_VERSION=0.29.1+cu126
# TensorRT 10.6 is one build for every CUDA 12.x from 12.1, 12.2 (the L4's driver 535) included:
# "TensorRT Support Matrix", 10.6.0, Linux x86-64 supported CUDA versions,
# https://docs.nvidia.com/deeplearning/tensorrt/archives/tensorrt-1060/pdf/TensorRT-Support-Matrix-Guide.pdf
# (from 11.x the pip wheels want driver r535+ with newer CUDA 12 minors; 10.6 keeps the margin).
ARG TENSORRT_VERSION=10.6.0.post2
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:$PATH
# CUDA 12 builds first, in their own layer; the project's pins (torch==2.14.1, torchvision==0.29.1)
# are then already satisfied by 2.14.1+cu126 / 0.29.1+cu126, so pip keeps them.
RUN python -m venv /opt/venv \
 && pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" \
        "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}" \
 && pip install --no-cache-dir "tensorrt-cu12==${TENSORRT_VERSION}"

# ---- torch for CPU regions: no CUDA at all ---------------------------------------------------------
FROM ${PYTHON_IMAGE} AS torch-cpu
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.14.1+cpu
ARG TORCHVISION_VERSION=0.29.1+cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv \
 && pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" \
        "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}"

# ---- the project on top of either --------------------------------------------------------------------
# The stage is picked by the ACCELERATOR build argument; hadolint cannot see through the variable,
# so DL3006 (untagged base image) does not apply to this line.
# hadolint ignore=DL3006
FROM torch-${ACCELERATOR} AS build
ARG ACCELERATOR
ARG OPENCV_HEADLESS_VERSION=5.0.0.93
WORKDIR /src
COPY pyproject.toml ./
COPY function ./function
# ultralytics pulls opencv-python, which needs libGL and X11 libraries a slim image lacks; the
# headless build of the same version has no such dependency. The last line proves the image got
# the torch it was meant to: CUDA 12 for gpu, no CUDA for cpu.
RUN pip install --no-cache-dir . \
 && pip uninstall --yes opencv-python \
 && pip install --no-cache-dir --no-deps --force-reinstall "opencv-python-headless==${OPENCV_HEADLESS_VERSION}" \
 && python -c "import sys, cv2, torch, function.server; cuda = torch.version.cuda; sys.exit(0 if (cuda or '').startswith('12.') == (sys.argv[1] == 'gpu') else 'torch CUDA %s does not fit %s' % (cuda, sys.argv[1]))" "${ACCELERATOR}"

FROM ${PYTHON_IMAGE} AS serve
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /home/app --create-home --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
# MALLOC_ARENA_MAX=2: glibc otherwise keeps one malloc arena per thread, and a threaded server's
# resident memory creeps up with them; two arenas keep it flat.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/app \
    PORT=8080 \
    MODEL_CACHE_DIR=/tmp/model-cache \
    YOLO_CONFIG_DIR=/tmp/Ultralytics \
    MALLOC_ARENA_MAX=2 \
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

# The final stage is one of the two above, picked by the WEIGHTS build argument (DL3006 as above).
# hadolint ignore=DL3006
FROM weights-${WEIGHTS}
