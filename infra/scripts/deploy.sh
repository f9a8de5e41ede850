#!/usr/bin/env bash
# One command from a trained best.pt to a GPU endpoint in one or more Cloud Run regions.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
	cat <<EOF
Usage: $(basename "$0") --project PROJECT --regions REGION[,REGION...] --model PATH|gs://BUCKET/OBJECT [options]

Deploys the YOLO endpoint to Cloud Run with one NVIDIA L4 GPU per instance, in each region:
  1. creates the Terraform state bucket gs://PROJECT-NAME-tfstate if missing;
  2. applies Terraform for the shared resources (APIs, service accounts, weights bucket,
     API-key secret, Artifact Registry) on a first deployment, and stores the first API key;
  3. uploads a local weights file to gs://PROJECT-NAME-weights/models/SHA256/ unless it is there;
  4. builds the image remotely with Cloud Build (no local Docker), unless that exact source
     was built before (the tag is a hash of the build context);
  5. applies Terraform for every region, then prints each URL and a ready-to-paste curl.
Re-running with the same inputs changes nothing; a new model or new code rolls a new revision,
which takes traffic only once its startup probe (/readyz) passes: no downtime.
Regions stopped with stop.sh stay stopped.

Required:
  --project ID           Google Cloud project ID
  --regions LIST         comma-separated Cloud Run GPU regions; the first hosts the image
                         repository and Cloud Build. Allowed: ${GPU_REGIONS[*]}
  --model PATH|GS_URI    local weights file (uploaded), or gs://bucket/path/best.pt (used as is)

Options:
  --name NAME            base name of every resource (default: yolo)
  --min-instances N      warm instances per region, each a GPU billed all the time (default: 1)
  --max-instances N      most instances per region (default: 3)
  --concurrency N        requests per instance at once (default: 8)
  --domains LIST         comma-separated domains: also create a global HTTPS load balancer
                         with a Google-managed certificate in front of all regions
  --model-id ID          ID accepted at POST /api/models/ID/predict
  --bake-weights         copy the weights into the image (fastest cold start, bigger image)
  --zonal-redundancy     keep GPU zonal redundancy on (dearer; default: off)
  --dry-run              print the exact commands instead of running them; needs neither
                         gcloud nor terraform nor a login, and touches no cloud resource
  -h, --help             show this help

Needs gcloud (logged in: gcloud auth login), Application Default Credentials for Terraform
(gcloud auth application-default login), terraform >= 1.9 and python3.
EOF
}

REGIONS_ARG="" MODEL="" MIN_INSTANCES=1 MAX_INSTANCES=3 CONCURRENCY=8 DOMAINS_ARG="" MODEL_ID="" BAKE=0 ZONAL_REDUNDANCY=0

while (($#)); do
	arg=$1
	value=""
	case $arg in
	--*=*)
		value=${arg#*=}
		arg=${arg%%=*}
		;;
	--project | --regions | --model | --name | --min-instances | --max-instances | --concurrency | --domains | --model-id)
		if (($# < 2)) || [[ $2 == --* ]]; then usage_error "$arg needs a value"; fi
		value=$2
		shift
		;;
	esac
	case $arg in
	--project) PROJECT=$value ;;
	--regions) REGIONS_ARG=$value ;;
	--model) MODEL=$value ;;
	--name) NAME=$value ;;
	--min-instances) MIN_INSTANCES=$value ;;
	--max-instances) MAX_INSTANCES=$value ;;
	--concurrency) CONCURRENCY=$value ;;
	--domains) DOMAINS_ARG=$value ;;
	--model-id) MODEL_ID=$value ;;
	--bake-weights) BAKE=1 ;;
	--zonal-redundancy) ZONAL_REDUNDANCY=1 ;;
	--dry-run) DRY_RUN=1 ;;
	-h | --help)
		usage
		exit 0
		;;
	*) usage_error "unknown argument: $arg" ;;
	esac
	shift
done

# ---- validate every argument before touching anything ----------------------------------------
[[ -n $PROJECT ]] || usage_error "--project is required (make deploy PROJECT=...)"
valid_project "$PROJECT" || usage_error "--project '$PROJECT' is not a valid project ID (6-30 lowercase letters, digits, hyphens; starts with a letter)"
valid_name "$NAME" || usage_error "--name '$NAME' must be 2-20 lowercase letters, digits or hyphens, starting with a letter"
[[ -n $REGIONS_ARG ]] || usage_error "--regions is required, e.g. --regions us-central1,europe-west4 (make deploy REGIONS=...)"
[[ ! $REGIONS_ARG =~ (^,|,,|,$) ]] || usage_error "--regions has an empty entry: '$REGIONS_ARG'"
IFS=',' read -r -a REGIONS <<<"$REGIONS_ARG"
seen=" "
for r in "${REGIONS[@]}"; do
	[[ -n $r ]] || usage_error "--regions has an empty entry: '$REGIONS_ARG'"
	check_region "$r"
	[[ $seen != *" $r "* ]] || usage_error "region $r is given twice"
	seen+="$r "
done
[[ -n $MODEL ]] || usage_error "--model is required: a local weights file or gs://bucket/path/best.pt (make deploy MODEL=...)"
if [[ $MODEL == gs://* ]]; then
	[[ $MODEL =~ ^gs://([a-z0-9][a-z0-9._-]{1,61}[a-z0-9])/(.*[^/])$ ]] || usage_error "--model '$MODEL' is not a gs://bucket/object URI"
	MODEL_GS_BUCKET=${BASH_REMATCH[1]}
	MODEL_GS_OBJECT=${BASH_REMATCH[2]}
else
	[[ -f $MODEL ]] || usage_error "--model '$MODEL' is not a file (give a local weights file or a gs:// URI)"
	[[ -r $MODEL && -s $MODEL ]] || usage_error "--model '$MODEL' is empty or unreadable"
fi
for pair in "min-instances:$MIN_INSTANCES" "max-instances:$MAX_INSTANCES" "concurrency:$CONCURRENCY"; do
	[[ ${pair#*:} =~ ^[0-9]+$ ]] || usage_error "--${pair%%:*} must be a whole number, got '${pair#*:}'"
done
((MIN_INSTANCES <= 100)) || usage_error "--min-instances must be at most 100"
((MAX_INSTANCES >= 1 && MAX_INSTANCES <= 1000)) || usage_error "--max-instances must be 1-1000"
((MAX_INSTANCES >= MIN_INSTANCES)) || usage_error "--max-instances ($MAX_INSTANCES) is below --min-instances ($MIN_INSTANCES)"
((CONCURRENCY >= 1 && CONCURRENCY <= 1000)) || usage_error "--concurrency must be 1-1000"
DOMAINS=()
if [[ -n $DOMAINS_ARG ]]; then
	IFS=',' read -r -a DOMAINS <<<"$DOMAINS_ARG"
	for d in "${DOMAINS[@]}"; do
		[[ $d =~ ^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$ ]] || usage_error "--domains: '$d' is not a lowercase domain name such as api.example.com"
	done
fi
[[ $MODEL_ID =~ ^[A-Za-z0-9_-]{0,64}$ ]] || usage_error "--model-id may only contain letters, digits, underscores and hyphens"

set_names
REGISTRY_REGION=${REGIONS[0]}
case ${REGISTRY_REGION%%-*} in
europe | me | africa) STORAGE_LOCATION=EU ;;
asia | australia) STORAGE_LOCATION=ASIA ;;
*) STORAGE_LOCATION=US ;;
esac

require_tools gcloud terraform python3
check_project_access
make_workdir
VARFILE="$WORK/deploy.tfvars.json"

json_list() { # json_list ITEM... -> ["a","b"]
	local out="" item
	for item in "$@"; do out+="\"$item\","; done
	printf '[%s]' "${out%,}"
}
bool() { if (($1)); then printf true; else printf false; fi; }

# ---- 1. Terraform state --------------------------------------------------------------------
note "== 1/5 Terraform state in gs://$STATE_BUCKET"
if ! exists gcloud storage buckets describe "gs://$STATE_BUCKET" --project="$PROJECT"; then
	run gcloud storage buckets create "gs://$STATE_BUCKET" --project="$PROJECT" --location="$STORAGE_LOCATION" --uniform-bucket-level-access --public-access-prevention
	run gcloud storage buckets update "gs://$STATE_BUCKET" --versioning
fi
tf_init

PREVIOUS_IMAGE=""
if fetch_tfvars && ((!DRY_RUN)); then
	PREVIOUS_IMAGE=$(python3 "$TFVARS_PY" get "$VARFILE" image)
fi

# Weights: where they live decides weights_bucket / model_object / model_path_in_image.
WEIGHTS_MODE=none WEIGHTS_BUCKET_VAR="" MODEL_OBJECT="" MODEL_PATH_IN_IMAGE=""
if ((BAKE)); then
	WEIGHTS_MODE=baked
	MODEL_PATH_IN_IMAGE=/opt/weights/best.pt
elif [[ $MODEL == gs://* ]]; then
	# The module's own bucket is managed by Terraform; any other bucket is used as given.
	[[ $MODEL_GS_BUCKET == "$WEIGHTS_BUCKET" ]] || WEIGHTS_BUCKET_VAR=$MODEL_GS_BUCKET
	MODEL_OBJECT=$MODEL_GS_OBJECT
else
	sha=$(sha256 <"$MODEL" | cut -c1-16)
	base=$(basename "$MODEL")
	[[ $base =~ ^[A-Za-z0-9._-]+$ ]] || base=best.pt
	MODEL_OBJECT="models/$sha/$base"
fi

base_vars() { # base_vars IMAGE -> the deployment's variables as one JSON object
	printf '{"project_id":"%s","name":"%s","regions":%s,"image":"%s","weights_bucket":"%s","model_object":"%s","model_path_in_image":"%s","model_id":"%s","min_instances":%s,"max_instances":%s,"max_concurrency":%s,"gpu_zonal_redundancy_disabled":%s,"lb_domains":%s}' \
		"$PROJECT" "$NAME" "$(json_list "${REGIONS[@]}")" "$1" "$WEIGHTS_BUCKET_VAR" "$MODEL_OBJECT" "$MODEL_PATH_IN_IMAGE" "$MODEL_ID" \
		"$MIN_INSTANCES" "$MAX_INSTANCES" "$CONCURRENCY" "$(bool $((!ZONAL_REDUNDANCY)))" "$(json_list "${DOMAINS[@]}")"
}

# ---- 2. Shared resources, first deployment only ---------------------------------------------
if [[ -z $PREVIOUS_IMAGE ]]; then
	note "== 2/5 shared resources (first deployment): APIs, service accounts, buckets, secret, repository"
	run python3 "$TFVARS_PY" merge "$VARFILE" "$(base_vars "")"
	tf_apply "$VARFILE"
	push_tfvars
else
	note "== 2/5 shared resources exist (deployed image: $PREVIOUS_IMAGE)"
fi

note "== API key in Secret Manager secret $SECRET"
if ! exists gcloud secrets versions describe latest --secret="$SECRET" --project="$PROJECT"; then
	# The key goes from the random generator straight into Secret Manager: it is never printed,
	# never a command-line argument, never in Terraform state.
	keygen=(od -An -N24 -tx1 /dev/urandom)
	add_key=(gcloud secrets versions add "$SECRET" --data-file=- --project="$PROJECT")
	if ((DRY_RUN)); then
		printf "%s | tr -d ' \\\\n' | %s\n" "$(shell_quote "${keygen[@]}")" "$(shell_quote "${add_key[@]}")"
	else
		note "+ $(shell_quote "${keygen[@]}") | tr -d ' \\n' | $(shell_quote "${add_key[@]}")"
		"${keygen[@]}" | tr -d ' \n' | "${add_key[@]}" >/dev/null
	fi
fi

# ---- 3. Weights ---------------------------------------------------------------------------------
note "== 3/5 weights"
CONTEXT="$WORK/context"
mkdir -p "$CONTEXT"
if ((BAKE)); then
	mkdir -p "$CONTEXT/weights"
	if [[ $MODEL == gs://* ]]; then
		run gcloud storage cp "$MODEL" "$CONTEXT/weights/best.pt" --project="$PROJECT"
	else
		cp "$MODEL" "$CONTEXT/weights/best.pt"
	fi
	note "baking $MODEL into the image at $MODEL_PATH_IN_IMAGE"
elif [[ $MODEL == gs://* ]]; then
	run gcloud storage objects describe "$MODEL" --project="$PROJECT" --format='value(size)'
else
	target="gs://$WEIGHTS_BUCKET/$MODEL_OBJECT"
	if ! exists gcloud storage objects describe "$target" --project="$PROJECT"; then
		run gcloud storage cp "$MODEL" "$target" --project="$PROJECT"
	fi
fi

# ---- 4. Image ---------------------------------------------------------------------------------
note "== 4/5 image"
for f in Dockerfile .dockerignore pyproject.toml; do cp "$REPO_ROOT/$f" "$CONTEXT/"; done
tar -C "$REPO_ROOT" --exclude=__pycache__ --exclude='*.pyc' -cf - function | tar -C "$CONTEXT" -xf -
# The tag is a hash of the build context's contents: the same sources are built once.
TAG=$(cd "$CONTEXT" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 "${SHA256[@]}" | sha256 | cut -c1-16)
cp "$INFRA_DIR/cloudbuild.yaml" "$CONTEXT/"
IMAGE="${REGISTRY_REGION}-docker.pkg.dev/${PROJECT}/${NAME}/endpoint:${TAG}"
if ! exists gcloud artifacts docker images describe "$IMAGE" --project="$PROJECT"; then
	run gcloud builds submit "$CONTEXT" --project="$PROJECT" --region="$REGISTRY_REGION" \
		--config="$CONTEXT/cloudbuild.yaml" --substitutions="_IMAGE=$IMAGE,_WEIGHTS=$WEIGHTS_MODE" \
		--service-account="projects/$PROJECT/serviceAccounts/$BUILD_SA" --gcs-source-staging-dir="gs://$BUILD_BUCKET/source"
else
	note "image $IMAGE already built"
fi

# ---- 5. Every region --------------------------------------------------------------------------
note "== 5/5 Cloud Run services in ${REGIONS[*]}"
run python3 "$TFVARS_PY" merge "$VARFILE" "$(base_vars "$IMAGE")"
tf_apply "$VARFILE"
push_tfvars

if ((DRY_RUN)); then
	tf output -json
	note "(dry run: nothing was changed)"
	exit 0
fi

terraform -chdir="$DEPLOY_DIR" output -json >"$WORK/outputs.json"
python3 - "$WORK/outputs.json" "$PROJECT" "$SECRET" <<'PY'
import json, sys
outputs = {k: v.get("value") for k, v in json.load(open(sys.argv[1])).items()}
project, secret = sys.argv[2], sys.argv[3]
urls = outputs.get("endpoint_urls") or {}
print("\nEndpoints:")
for region, url in sorted(urls.items()):
    print(f"  {region:<16} {url}")
for region in outputs.get("stopped_regions") or []:
    print(f"  {region:<16} stopped (make start REGION={region})")
if outputs.get("load_balancer_url"):
    print(f"  {'all regions':<16} {outputs['load_balancer_url']}  (point DNS at {outputs['load_balancer_ip']}; the certificate activates after DNS resolves)")
target = outputs.get("load_balancer_url") or (sorted(urls.values()) or ["<url>"])[0]
print("\nTry it (reads the API key from Secret Manager, never prints it):")
print(f"  KEY=$(gcloud secrets versions access latest --secret={secret} --project={project} | head -n 1)")
print(f'  curl -sS -H "Authorization: Bearer $KEY" -F file=@image.jpg {target}/predict')
PY
