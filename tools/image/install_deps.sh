#!/bin/sh
# The image's dependency layer (Dockerfile, stage deps): /opt/venv with the locked set (tools/lock/) and the torch
# build the accelerator's driver can run.
#   $1  ACCELERATOR: none | nvidia-l4 | nvidia-rtx-pro-6000
#   $2  TORCH_SOURCE: a PyTorch wheel index, or "lock" for PyPI's CUDA 13 build pinned in torch.txt; empty: the
#       accelerator's own (CPU index / CUDA 12.6 index / lock)
set -eu
accelerator=$1
case $accelerator in
	# CPU regions: no CUDA libraries at all (several GB smaller, so a cold start pulls far less).
	none) index=https://download.pytorch.org/whl/cpu local=+cpu tensorrt= ;;
	# Cloud Run's L4 driver is 535.x (CUDA 12.2): PyPI's CUDA 13 torch cannot run there, the 12.6 build can (CUDA
	# minor-version compatibility). TensorRT 10.6 is one build for every CUDA 12.x from 12.1, 12.2 included: "TensorRT
	# Support Matrix" 10.6.0, https://docs.nvidia.com/deeplearning/tensorrt/archives/tensorrt-1060/pdf/TensorRT-Support-Matrix-Guide.pdf
	nvidia-l4) index=https://download.pytorch.org/whl/cu126 local=+cu126 tensorrt=tensorrt-cu12==10.6.0.post2 ;;
	# The RTX PRO 6000's driver is 580.x (CUDA 13.0): PyPI's torch is a CUDA 13.0 build, as locked. TensorRT 10.13.3
	# is the first release for CUDA 13.0 and Blackwell (sm_120): its release notes,
	# https://docs.nvidia.com/deeplearning/tensorrt/latest/getting-started/release-notes.html
	nvidia-rtx-pro-6000) index=lock local='' tensorrt=tensorrt-cu13==10.13.3.9 ;;
	*) echo "ACCELERATOR must be none, nvidia-l4 or nvidia-rtx-pro-6000, not '$accelerator'" >&2; exit 2 ;;
esac
source=${2:-$index}
python -m venv /opt/venv
if [ "$source" = lock ]; then
	pip install --no-deps --require-hashes -r /lock/torch.txt
else
	torch=$(sed -n 's/^torch==\([^ ]*\).*/\1/p' /lock/torch.txt)
	torchvision=$(sed -n 's/^torchvision==\([^ ]*\).*/\1/p' /lock/torch.txt)
	pip install --index-url "$source" "torch==$torch$local" "torchvision==$torchvision$local"
fi
# The rest exactly as locked; it also puts back the locked version of anything torch's own resolution pulled in.
pip install --no-deps --require-hashes -r /lock/runtime.txt
if [ -n "$tensorrt" ]; then pip install "$tensorrt"; fi
