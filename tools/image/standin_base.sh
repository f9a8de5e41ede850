#!/usr/bin/env bash
# A stand-in for python:3.11-slim-bookworm, for machines that cannot reach Docker Hub: Debian bookworm's minimal
# system with its own Python 3.11 (3.11.2, /usr/bin/python3; the official image has 3.11.15 in /usr/local), made
# from Debian's packages with mmdebstrap and imported into podman. It is a stand-in, not the image Cloud Build uses.
#   tools/image/standin_base.sh IMAGE_NAME
set -euo pipefail
name=${1:?usage: standin_base.sh IMAGE_NAME}
if podman image exists "$name"; then exit 0; fi
echo "building the stand-in base $name from Debian bookworm (python:3.11-slim-bookworm cannot be pulled here)"
mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates bookworm - \
	| podman import --change 'CMD ["python3"]' - "$name"
