#!/usr/bin/env bash
# `make image`: builds the endpoint image with Docker (BuildKit, as Cloud Build does) where a Docker engine answers,
# else with podman (installed from Debian's packages when missing).
#   ACCELERATOR  none (default) | nvidia-l4 | nvidia-rtx-pro-6000
#   IMAGE        the tag; default yolo-cloud-run:cpu, yolo-cloud-run:nvidia-l4, ...
#   WEIGHTS      none (default) | baked (copies ./weights/best.pt in)
#   TORCH_SOURCE the Dockerfile's: empty for the accelerator's own PyTorch index; with podman "lock" by default
#                (PyPI's CUDA 13 torch), since the machines podman stands in on reach PyPI but not PyTorch's index
#   BASE_IMAGE   default python:3.11.15-slim-bookworm; with podman, where it is not present, a stand-in made from
#                Debian's packages (tools/image/standin_base.sh)
set -euo pipefail
cd "$(dirname "$0")/../.."
ACCELERATOR=${ACCELERATOR:-none}
WEIGHTS=${WEIGHTS:-none}
case $ACCELERATOR in
	none) flavour=cpu ;;
	nvidia-l4 | nvidia-rtx-pro-6000) flavour=$ACCELERATOR ;;
	*) echo "ACCELERATOR must be none, nvidia-l4 or nvidia-rtx-pro-6000, not '$ACCELERATOR'" >&2; exit 2 ;;
esac
IMAGE=${IMAGE:-yolo-cloud-run:$flavour}
OFFICIAL_BASE=python:3.11.15-slim-bookworm
STANDIN_BASE=localhost/python-standin:3.11-slim-bookworm

if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
	exec env DOCKER_BUILDKIT=1 docker build --build-arg "ACCELERATOR=$ACCELERATOR" --build-arg "WEIGHTS=$WEIGHTS" \
		--build-arg "TORCH_SOURCE=${TORCH_SOURCE:-}" --build-arg "BASE_IMAGE=${BASE_IMAGE:-$OFFICIAL_BASE}" \
		--tag "$IMAGE" .
fi

if ! command -v podman >/dev/null || ! command -v mmdebstrap >/dev/null || ! command -v runc >/dev/null; then
	echo "no Docker engine: installing podman, runc and mmdebstrap from Debian's packages"
	if [ "$(id -u)" = 0 ]; then sudo=; else sudo=sudo; fi
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq podman buildah runc mmdebstrap >/dev/null
fi
if [ -z "${BASE_IMAGE:-}" ]; then
	if podman image exists "$OFFICIAL_BASE"; then BASE_IMAGE=$OFFICIAL_BASE; else
		BASE_IMAGE=$STANDIN_BASE
		tools/image/standin_base.sh "$BASE_IMAGE"
	fi
fi

# pip inside the build reaches packages the way pip here does: its configuration (files and PIP_* variables) merged
# into one pip.conf, and every local folder or file it names mounted read-only at the same path.
pipconf=$(mktemp -d)
trap 'rm -rf "$pipconf"' EXIT
mapfile -t mounts < <(python3 - "$pipconf/pip.conf" <<'PY'
import os, re, subprocess, sys
listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
settings = {}  # pip lists variables first, then files: the first value of a key is the one pip uses
for key, value in re.findall(r"^[^.]*\.([^=]+)='(.*)'$", listed, re.M):
    settings.setdefault(key, value)
with open(sys.argv[1], "w") as conf:
    conf.write("[global]\n" + "".join(f"{key} = {value}\n" for key, value in settings.items()))
for value in " ".join(settings.values()).split():
    path = value.removeprefix("file://")
    if path.startswith("/") and os.path.exists(path):
        path = os.path.dirname(path.rstrip("/")) if value.startswith("file://") else path  # an index: its files/ too
        print(f"--volume={path}:{path}:ro")
PY
)
# crun refuses this kind of machine's cgroups and podman's default ulimits are refused: runc and explicit limits
# (open files: this shell's; processes: 32768, accepted where this shell's own maximum is refused).
podman build --runtime runc --network host --ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=32768:32768 \
	--volume "$pipconf/pip.conf:/etc/pip.conf:ro" "${mounts[@]}" \
	--build-arg "ACCELERATOR=$ACCELERATOR" --build-arg "TORCH_SOURCE=${TORCH_SOURCE-lock}" \
	--build-arg "BASE_IMAGE=$BASE_IMAGE" --target "weights-$WEIGHTS" --tag "$IMAGE" .
