# syntax=docker/dockerfile:1
#
# The YOLO endpoint for Cloud Run, one image per accelerator (build argument ACCELERATOR):
#
#   none                 CPU regions: PyTorch's CPU-only build (no CUDA libraries: several GB smaller)
#   nvidia-l4            the L4 (driver 535, CUDA 12.2): PyTorch's CUDA 12.6 build and TensorRT for CUDA 12
#   nvidia-rtx-pro-6000  the RTX PRO 6000 Blackwell (driver 580, CUDA 13.0): PyPI's CUDA 13 build and TensorRT
#                        for CUDA 13
#
# Every other package is exactly the lock (tools/lock/, `make lock`), the same set `make install` puts in the venv.
# Layers follow how often things change: the base, the dependencies (gigabytes, rebuilt when the lock changes), then
# the project (a wheel of function/: a code change rebuilds and pushes that small layer only).
#
#   make image                                   # yolo-cloud-run:cpu, with Docker (BuildKit) or podman
#   make image ACCELERATOR=nvidia-l4             # yolo-cloud-run:nvidia-l4
#   docker build --build-arg ACCELERATOR=nvidia-l4 -t yolo-l4 .
#   docker build --build-arg WEIGHTS=baked -t yolo-cpu-baked .   # bakes ./weights/best.pt in (BuildKit)
#
# The command is `python -m function`, the service on 0.0.0.0:$PORT (HTTP/1.1 and h2c); it finishes in-flight
# requests and exits on SIGTERM well inside Cloud Run's 10 s. Run it as Cloud Run does: any non-root uid, a
# read-only filesystem but /tmp.

ARG BASE_IMAGE=python:3.11.15-slim-bookworm
# none: MODEL is set at deploy time (gs://... downloaded at cold start). baked: ./weights/best.pt is copied to
# /opt/weights/best.pt and MODEL points there (fastest cold start, bigger image).
ARG WEIGHTS=none

# ---- the dependencies: one big layer that only the lock and the accelerator change -------------------------
FROM ${BASE_IMAGE} AS deps
ARG ACCELERATOR=none
# Where torch comes from: empty for the accelerator's own (see tools/image/install_deps.sh), "lock" for PyPI's CUDA 13
# build (where PyTorch's index cannot be reached), or another wheel index.
ARG TORCH_SOURCE=
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:$PATH
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /home/app --create-home --shell /usr/sbin/nologin app
COPY tools/lock/torch.txt tools/lock/runtime.txt tools/image/install_deps.sh /lock/
RUN sh /lock/install_deps.sh "${ACCELERATOR}" "${TORCH_SOURCE}"

# ---- the project, as the wheel users would install ---------------------------------------------------------------
FROM deps AS wheel
COPY pyproject.toml /src/
COPY function /src/function
RUN pip wheel --quiet --no-deps --no-build-isolation --wheel-dir /wheel /src

FROM deps AS serve
ARG ACCELERATOR=none
ARG TORCH_SOURCE=
COPY --from=wheel /wheel/ /tmp/wheel/
COPY tools/image/check.py /tmp/check.py
# The check runs from /, on the installed package: every module imports and torch fits the accelerator.
WORKDIR /
# OpenVINO's telemetry asks its consent file in $HOME, which is read-only on Cloud Run: the answer is no, written here.
RUN pip install --quiet --no-deps /tmp/wheel/*.whl \
 && python /tmp/check.py "${ACCELERATOR}" "${TORCH_SOURCE}" \
 && rm -rf /tmp/wheel /tmp/check.py \
 && install -d -o 10001 -g 10001 /home/app/intel && echo 0 > /home/app/intel/openvino_telemetry
# MALLOC_ARENA_MAX=2: glibc otherwise keeps one malloc arena per thread, and a threaded server's resident memory
# creeps up with them. YOLO_OFFLINE: Ultralytics neither probes the network at import nor sends usage events; the
# weights come from MODEL, nothing else is downloaded. Everything written goes under /tmp (Cloud Run's in-memory disk).
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/app \
    PORT=8080 \
    MODEL_CACHE_DIR=/tmp/model-cache \
    YOLO_CONFIG_DIR=/tmp/Ultralytics \
    YOLO_OFFLINE=1 \
    YOLO_AUTOINSTALL=false \
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

# The final stage is one of the two above, picked by WEIGHTS (BuildKit). podman cannot resolve a stage name built
# from an argument, so tools/image/build.sh names the stage with --target instead.
# hadolint ignore=DL3006
FROM weights-${WEIGHTS}
