#!/usr/bin/env bash
# Where each region of a deployment stands: running (URL, revision, /readyz) or stopped.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
	cat <<USAGE
Usage: $(basename "$0") [--project PROJECT] [--name NAME] [--dry-run]

Prints one line per region of the deployment: stopped, or running with its URL, the revision
serving traffic and what GET /readyz answers now. Reads only; changes nothing.

  --project ID     Google Cloud project (default: gcloud config get-value project)
  --name NAME      deployment name given to deploy.sh (default: yolo)
  --dry-run        print the exact commands instead of running them
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

require_tools gcloud python3 curl
make_workdir
VARFILE="$WORK/deploy.tfvars.json"

fetch_tfvars || die "no deployment '$NAME' in project $PROJECT ($TFVARS_OBJECT not found): run make deploy first"
describe=(gcloud run services describe "$NAME" --project="$PROJECT" --format='value(status.url,status.latestReadyRevisionName)')
if ((DRY_RUN)); then
	printf '%s  # for each region of the deployment that is not stopped, then:\n' "$(shell_quote "${describe[@]}" --region=REGION)"
	printf '%s\n' "$(shell_quote curl -sS -o /dev/null -w '%{http_code}' --max-time 10 URL/readyz)"
	exit 0
fi

regions=$(python3 "$TFVARS_PY" get "$VARFILE" regions)
stopped=" $(python3 "$TFVARS_PY" get "$VARFILE" stopped_regions | tr '\n' ' ') "
printf '%-16s %-8s %-56s %-28s %s\n' REGION STATE URL REVISION READYZ
for region in $regions; do
	if [[ $stopped == *" $region "* ]]; then
		printf '%-16s %-8s %s\n' "$region" stopped "(no service, no GPU billed; make start REGION=$region)"
		continue
	fi
	if ! line=$("${describe[@]}" --region="$region" 2>/dev/null); then
		printf '%-16s %-8s %s\n' "$region" missing "(no Cloud Run service; run make deploy)"
		continue
	fi
	read -r url revision <<<"$line"
	code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 "$url/readyz" 2>/dev/null) || code="000"
	printf '%-16s %-8s %-56s %-28s %s\n' "$region" running "$url" "${revision:-none}" "$code"
done
