#!/usr/bin/env bash
# End a canary: all traffic to the new release, in every running region.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
	cat <<USAGE
Usage: $(basename "$0") [--project PROJECT] [--name NAME] [--dry-run]

Ends the canary that deploy.sh --canary started: every running region sends all its traffic
to the new release (its revision is already warm), the canary tag goes away, and the old
revision stays, idle and unbilled, for make deploy with the old weights to bring back.
Terraform owns traffic: this edits the deployment's variables (canary) and applies.

  --project ID     Google Cloud project (default: gcloud config get-value project)
  --name NAME      deployment name given to deploy.sh (default: yolo)
  --dry-run        print the exact commands instead of running them (needs no gcloud,
                   terraform or login, and changes nothing)
  -h, --help       show this help
USAGE
}

parse_deployment_args "$@"

end_canary promote
