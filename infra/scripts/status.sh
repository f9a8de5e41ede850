#!/usr/bin/env bash
# Where each region of a deployment stands: running (kind, URL, revision, model, /readyz) or stopped.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
	cat <<USAGE
Usage: $(basename "$0") [--project PROJECT] [--name NAME] [--dry-run]

Prints one line per region of the deployment: stopped, or running with its kind (CPU, L4-GPU
or RTX-PRO-6000), URL, the revision serving traffic, the model it serves and what GET /readyz answers now,
and one more for a region's stream service (STATE streams, its wss:// URL for GET /stream);
then a canary in progress, if any, and where the dashboard is. Reads only; changes nothing.

  --project ID     Google Cloud project (default: gcloud config get-value project)
  --name NAME      deployment name given to deploy.sh (default: yolo)
  --dry-run        print the exact commands instead of running them
  -h, --help       show this help
USAGE
}

parse_deployment_args "$@"

require_tools gcloud python3 curl
make_workdir
VARFILE="$WORK/deploy.tfvars.json"

fetch_tfvars || die "no deployment '$NAME' in project $PROJECT ($TFVARS_OBJECT not found): run make deploy first"
describe=(--project="$PROJECT" --format='value(status.url,status.latestReadyRevisionName)')
DASHBOARDS="https://console.cloud.google.com/monitoring/dashboards?project=$PROJECT"
if ((DRY_RUN)); then
	printf '%s  # for each region of the deployment that is not stopped, then:\n' "$(shell_quote gcloud run services describe "$NAME" "${describe[@]}" --region=REGION)"
	printf '%s\n' "$(shell_quote curl -sS -o /dev/null -w '%{http_code}' --max-time 10 URL/readyz)"
	printf '%s  # and for each of those regions with streams, the same for its stream service\n' "$(shell_quote gcloud run services describe "$NAME-streams" "${describe[@]}" --region=REGION)"
	note "dashboard: $DASHBOARDS (\"YOLO endpoint $NAME\")"
	exit 0
fi

regions=$(python3 "$TFVARS_PY" get "$VARFILE" regions)
stopped=" $(python3 "$TFVARS_PY" get "$VARFILE" stopped_regions | tr '\n' ' ') "
model=$(python3 "$TFVARS_PY" get "$VARFILE" model_object)
[[ -n $model ]] || model=$(python3 "$TFVARS_PY" get "$VARFILE" model_path_in_image)
# "REGION KIND STREAMS" per region: CPU, L4-GPU or RTX-PRO-6000, and 1 with a stream service (a file of the L4-only
# version lists regions).
kinds=$(python3 - "$VARFILE" <<'PY'
import json, sys
labels = {"none": "CPU", "nvidia-l4": "L4-GPU", "nvidia-rtx-pro-6000": "RTX-PRO-6000"}
regions = json.load(open(sys.argv[1])).get("regions", {})
regions = {r: {"accelerator": "nvidia-l4"} for r in regions} if isinstance(regions, list) else regions
for r, v in regions.items():
    accelerator = (v or {}).get("accelerator", "none")
    print(r, labels.get(accelerator, accelerator), int(bool((v or {}).get("streams"))))
PY
)
# show STATE SERVICE REGION KIND: the row of one service that should be running there: its URL (a stream service's as
# the wss:// URL of GET /stream), the newest ready revision and what GET /readyz answers now; false when it is missing.
show() {
	local state=$1 service=$2 region=$3 kind=$4 line url revision code
	if ! line=$(gcloud run services describe "$service" "${describe[@]}" --region="$region" 2>/dev/null); then
		printf '%-24s %-8s %-13s %s\n' "$region" missing "$kind" "(no Cloud Run service $service; run make deploy)"
		return 1
	fi
	read -r url revision <<<"$line"
	code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 "$url/readyz" 2>/dev/null) || code="000"
	[[ $state != streams ]] || url="${url/#http/ws}/stream"
	printf '%-24s %-8s %-13s %-56s %-22s %-6s %s\n' "$region" "$state" "$kind" "$url" "${revision:-none}" "$code" "$model"
}

printf '%-24s %-8s %-13s %-56s %-22s %-6s %s\n' REGION STATE KIND URL REVISION READYZ MODEL
for region in $regions; do
	kind=$(awk -v r="$region" '$1 == r {print $2}' <<<"$kinds")
	streams=$(awk -v r="$region" '$1 == r {print $3}' <<<"$kinds")
	if [[ $stopped == *" $region "* ]]; then
		printf '%-24s %-8s %-13s %s\n' "$region" stopped "$kind" "(no service, nothing billed; make start REGION=$region)"
		continue
	fi
	show running "$NAME" "$region" "$kind" || continue
	[[ $streams != 1 ]] || show streams "$NAME-streams" "$region" "$kind" || true
done
canary=$(python3 "$TFVARS_PY" get "$VARFILE" canary)
if [[ -n $canary ]]; then
	printf '\ncanary in progress: %s (make promote or make rollback)\n' "$canary"
fi
printf '\ndashboard: %s ("YOLO endpoint %s")\n' "$DASHBOARDS" "$NAME"
