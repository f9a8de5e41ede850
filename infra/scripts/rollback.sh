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

while (($#)); do
	arg=$1 value=""
	case $arg in
	--*=*) value=${arg#*=} arg=${arg%%=*} ;;
	--project | --name)
		if (($# < 2)) || [[ $2 == --* ]]; then usage_error "$arg needs a value"; fi
		value=$2
		shift
		;;
	esac
	case $arg in
	--project) PROJECT=$value ;;
	--name) NAME=$value ;;
	--dry-run) DRY_RUN=1 ;;
	-h | --help)
		usage
		exit 0
		;;
	*) usage_error "unknown argument: $arg" ;;
	esac
	shift
done

valid_name "$NAME" || usage_error "--name '$NAME' must be 2-20 lowercase letters, digits or hyphens"
default_project
valid_project "$PROJECT" || usage_error "--project '$PROJECT' is not a valid project ID"
set_names

require_tools gcloud terraform python3
check_project_access
make_workdir

fetch_tfvars || die "no deployment '$NAME' in project $PROJECT ($TFVARS_OBJECT not found): run make deploy first"
run python3 "$TFVARS_PY" rollback "$WORK/deploy.tfvars.json"
tf_init
tf_apply "$WORK/deploy.tfvars.json"
push_tfvars
report_outputs
