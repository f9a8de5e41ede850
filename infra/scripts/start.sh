#!/usr/bin/env bash
# "Start endpoint": bring stopped regions back to their configured warm instances and wait for /readyz.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
	cat <<USAGE
Usage: $(basename "$0") --region REGION[,REGION...] [--project PROJECT] [options]

Starts regions that stop.sh stopped: removes them from the deployment's stopped_regions and
applies Terraform, which recreates each region's Cloud Run service with its configured minimum
(warm) instances, then waits until every started region's /readyz answers 200.
Starting a region that is already running only re-applies and waits.

  --region LIST    comma-separated regions of the deployment
  --project ID     Google Cloud project (default: gcloud config get-value project)
  --name NAME      deployment name given to deploy.sh (default: yolo)
  --timeout S      seconds to wait for /readyz after Terraform is done (default: 600)
  --no-wait        do not wait for /readyz
  --dry-run        print the exact commands instead of running them (needs no gcloud,
                   terraform or login, and changes nothing)
  -h, --help       show this help
USAGE
}

REGION_ARG="" TIMEOUT=600 WAIT=1
parse_options "--region=REGION_ARG --regions=REGION_ARG --project=PROJECT --name=NAME --timeout=TIMEOUT
	--no-wait:WAIT=0 --dry-run:DRY_RUN=1" "$@"

parse_regions "$REGION_ARG"
[[ $TIMEOUT =~ ^[1-9][0-9]*$ ]] || usage_error "--timeout must be a positive number of seconds"
check_deployment

require_tools gcloud terraform python3 curl
check_project_access
make_workdir

fetch_tfvars || die "no deployment '$NAME' in project $PROJECT ($TFVARS_OBJECT not found): run make deploy first"
run python3 "$TFVARS_PY" start "$WORK/deploy.tfvars.json" "${REGIONS[@]}"
tf_init
tf_apply "$WORK/deploy.tfvars.json"
push_tfvars

((WAIT)) || exit 0
if ((DRY_RUN)); then
	endpoint_urls
	for region in "${REGIONS[@]}"; do wait_ready "<endpoint_urls[\"$region\"]>" "$TIMEOUT"; done
	exit 0
fi
urls=$(endpoint_urls)
for region in "${REGIONS[@]}"; do
	url=$(awk -v r="$region" '$1 == r {print $2}' <<<"$urls")
	[[ -n $url ]] || die "Terraform reports no URL for $region"
	wait_ready "$url" "$TIMEOUT"
done
note "started: ${REGIONS[*]}"
