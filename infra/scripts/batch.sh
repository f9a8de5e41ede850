#!/usr/bin/env bash
# Bulk inference as a Cloud Run Job execution: set the region's job (Terraform, batch_jobs), run it, wait.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
	cat <<USAGE
Usage: $(basename "$0") --input gs://BUCKET/PREFIX --output gs://BUCKET/PREFIX --region REGION [options] [-- BATCH ARGS]

Runs \`python -m function batch\` over every object under --input as one execution of the
deployment's batch job in REGION (the endpoint's image and weights; Terraform creates or updates
the job from the deployment's batch_jobs), with --tasks tasks, and waits for it. Each task takes
the chunks j with j mod TASKS = its index; a failed task is retried and does only the chunks not
yet written; running the same command again does only what is missing (docs/batch.md).

  --input URI          gs://BUCKET/PREFIX to read (the job's identity gets read access to the bucket)
  --output URI         gs://BUCKET/PREFIX to write: plan.json, results/, errors/, summary.json
  --region REGION      where the job runs (a Cloud Run region; with an L4, one that has them)
  --tasks N            tasks in this execution, 1-10000 (default 10)
  --parallelism N      tasks at once, 0 = no limit (default 0; GPU quota usually bounds it)
  --accelerator A      none (CPU, default) or nvidia-l4 (one L4 per task)
  --project ID         Google Cloud project (default: gcloud config get-value project)
  --name NAME          deployment name given to deploy.sh (default: yolo)
  --dry-run            print the exact commands instead of running them (needs no gcloud,
                       terraform or login, and changes nothing)
  -h, --help           show this help
  -- ARGS              more arguments of python -m function batch (--imgsz 640 --conf 0.3 ...)
USAGE
}

INPUT="" OUTPUT="" REGION="" TASKS=10 PARALLELISM=0 ACCELERATOR=none
parse_options "--input=INPUT --output=OUTPUT --region=REGION --tasks=TASKS --parallelism=PARALLELISM
	--accelerator=ACCELERATOR --project=PROJECT --name=NAME --dry-run:DRY_RUN=1 --" "$@"
BATCH_ARGS=(${REST_ARGS[@]+"${REST_ARGS[@]}"})

GS='^gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/.*)?$'
[[ $INPUT =~ $GS ]] || usage_error "--input must be gs://BUCKET/PREFIX, got '$INPUT' (a local folder runs here: make batch INPUT=./photos OUTPUT=./out)"
[[ $OUTPUT =~ $GS ]] || usage_error "--output must be gs://BUCKET/PREFIX, got '$OUTPUT'"
[[ "${OUTPUT%/}/" != "${INPUT%/}/"* ]] || usage_error "--output $OUTPUT is inside --input $INPUT: the results would become input"
[[ -n $REGION ]] || usage_error "--region is required, e.g. --region us-central1 (make batch ... REGION=...)"
check_region "$REGION"
case $ACCELERATOR in
none) ;;
nvidia-l4) check_gpu_region nvidia-l4 "$REGION" ;;
*) usage_error "--accelerator must be none or nvidia-l4 (the GPU Cloud Run Jobs offer), got '$ACCELERATOR'" ;;
esac
if ! [[ $TASKS =~ ^[0-9]{1,5}$ ]] || ((10#$TASKS < 1 || 10#$TASKS > 10000)); then
	usage_error "--tasks must be a whole number from 1 to 10000, got '$TASKS'"
fi
if ! [[ $PARALLELISM =~ ^[0-9]{1,5}$ ]] || ((10#$PARALLELISM > 10000)); then
	usage_error "--parallelism must be a whole number from 0 to 10000, got '$PARALLELISM'"
fi
check_deployment
JOB="${NAME}-batch"

require_tools gcloud terraform python3
check_project_access
make_workdir

# The job's settings live with the deployment's variables, so the next deploy keeps the job.
JOB_JSON=$(python3 -c 'import json, sys; print(json.dumps({"input": sys.argv[1], "output": sys.argv[2], "accelerator": sys.argv[3], "task_count": int(sys.argv[4]), "parallelism": int(sys.argv[5]), "batch_args": sys.argv[6:]}, separators=(",", ":")))' \
	"$INPUT" "$OUTPUT" "$ACCELERATOR" "$TASKS" "$PARALLELISM" ${BATCH_ARGS[@]+"${BATCH_ARGS[@]}"})
fetch_tfvars || die "no deployment '$NAME' in project $PROJECT ($TFVARS_OBJECT not found): the batch job runs the endpoint's image, so run make deploy first"
run python3 "$TFVARS_PY" job "$WORK/deploy.tfvars.json" "$REGION" "$JOB_JSON"
tf_init
tf_apply "$WORK/deploy.tfvars.json"
push_tfvars

# An execution's --args replace the container's arguments (its command, python -m function, stays): the whole
# batch command line, with gcloud's alternate delimiter when an argument holds a comma (--classes person,car).
ARGS=(batch --input "$INPUT" --output "$OUTPUT" ${BATCH_ARGS[@]+"${BATCH_ARGS[@]}"})
delimiter=","
for arg in "${ARGS[@]}"; do [[ $arg != *,* ]] || delimiter="|"; done
joined=$(IFS=$delimiter; printf '%s' "${ARGS[*]}")
[[ $delimiter == , ]] || joined="^|^$joined"
run gcloud run jobs execute "$JOB" --project="$PROJECT" --region="$REGION" --tasks="$TASKS" --args="$joined" --wait
run gcloud storage cat "${OUTPUT%/}/summary.json" --project="$PROJECT"
note "done: results in ${OUTPUT%/}/results/, errors in ${OUTPUT%/}/errors/; progress of a run: python -m function batch status --output $OUTPUT"
