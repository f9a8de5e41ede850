#!/usr/bin/env bash
# Undo a canary: the release that was serving before takes all traffic again.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
	cat <<USAGE
Usage: $(basename "$0") [--project PROJECT] [--name NAME] [--dry-run]

Ends the canary that deploy.sh --canary started the other way: the deployment variables go
back to the release that was serving before, so Terraform points every running region at that
revision again (same inputs, same revision name: it is found, not rebuilt) with all traffic.
The new release's revision stays, idle and unbilled.
Terraform owns traffic: this edits the deployment's variables (canary) and applies.

  --project ID     Google Cloud project (default: gcloud config get-value project)
  --name NAME      deployment name given to deploy.sh (default: yolo)
  --dry-run        print the exact commands instead of running them (needs no gcloud,
                   terraform or login, and changes nothing)
  -h, --help       show this help
USAGE
}

parse_deployment_args "$@"

end_canary rollback
