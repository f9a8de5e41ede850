#!/usr/bin/env bash
# "Stop endpoint": no instance runs and nothing is billed for it in the given regions until start.sh.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
	cat <<USAGE
Usage: $(basename "$0") --region REGION[,REGION...] [--project PROJECT] [options]

Stops regions: adds them to the deployment's stopped_regions and applies Terraform, which
deletes each region's Cloud Run service (and its load-balancer backend, if any). With no
service there is no instance, so no GPU, CPU or memory is billed, whatever traffic arrives;
the image, weights, API key and the other regions are untouched. start.sh brings them back.

  --region LIST    comma-separated regions of the deployment
  --project ID     Google Cloud project (default: gcloud config get-value project)
  --name NAME      deployment name given to deploy.sh (default: yolo)
  --dry-run        print the exact commands instead of running them (needs no gcloud,
                   terraform or login, and changes nothing)
  -h, --help       show this help
USAGE
}

REGION_ARG=""
parse_options "--region=REGION_ARG --regions=REGION_ARG --project=PROJECT --name=NAME --dry-run:DRY_RUN=1" "$@"

parse_regions "$REGION_ARG"
check_deployment

require_tools gcloud terraform python3
check_project_access
make_workdir

fetch_tfvars || die "no deployment '$NAME' in project $PROJECT ($TFVARS_OBJECT not found): nothing to stop"
run python3 "$TFVARS_PY" stop "$WORK/deploy.tfvars.json" "${REGIONS[@]}"
tf_init
tf_apply "$WORK/deploy.tfvars.json"
push_tfvars
note "stopped: ${REGIONS[*]} (no instance runs, nothing is billed for it; make start REGION=... to resume)"
