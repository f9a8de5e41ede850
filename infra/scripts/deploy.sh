#!/usr/bin/env bash
# One command from a trained best.pt to an endpoint in one or more Cloud Run regions, each on CPU,
# an NVIDIA L4 or an NVIDIA RTX PRO 6000; with --canary, a new model takes only part of the traffic
# until promoted.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
	cat <<EOF
Usage: $(basename "$0") --project PROJECT --regions REGION[:ACCELERATOR][,...] --model PATH|gs://BUCKET/OBJECT.pt [options]

Deploys the YOLO endpoint to Cloud Run, in each region on CPU (default: scale to zero, billed per
request) or on one GPU per instance: REGION:nvidia-l4 (or REGION:gpu) for an NVIDIA L4,
REGION:nvidia-rtx-pro-6000 for an NVIDIA RTX PRO 6000 Blackwell:
  0. refuses weights the endpoint could not serve: it loads them with Ultralytics on this
     machine's CPU (the project's virtualenv, make install), dry run included;
  1. creates the Terraform state bucket gs://PROJECT-NAME-tfstate if missing;
  2. applies Terraform for the shared resources (APIs, service accounts, weights bucket,
     API-key secret, Artifact Registry) on a first deployment, and stores the first API key;
  3. uploads a local weights file to gs://PROJECT-NAME-weights/models/SHA256/ unless it is there;
  4. builds one image per flavour the regions need (endpoint-cpu, endpoint-nvidia-l4,
     endpoint-nvidia-rtx-pro-6000: each GPU's driver has its own CUDA build) remotely with Cloud
     Build (no local Docker), unless that exact source was built before (the tag is a hash of the
     build context);
  5. applies Terraform for every region, then prints each URL and a ready-to-paste curl.
Re-running with the same inputs changes nothing; a new model or new code rolls a new revision,
which takes traffic only once its startup probe (/readyz) passes: no downtime. With --canary N
the new revision gets N% (and its own URL) and the deployed one keeps the rest, until
promote.sh or rollback.sh. Regions stopped with stop.sh stay stopped.

Required:
  --project ID           Google Cloud project ID
  --regions LIST         comma-separated Cloud Run regions, each REGION or REGION:cpu (CPU),
                         REGION:nvidia-l4 or REGION:gpu (one L4: 4+ vCPU, 16+ GiB) or
                         REGION:nvidia-rtx-pro-6000 (one RTX PRO 6000: 20+ vCPU, 80+ GiB), e.g.
                         us-central1:nvidia-l4,europe-west4:nvidia-rtx-pro-6000,europe-west3;
                         a :streams suffix (us-central1:nvidia-l4:streams, europe-west3:streams)
                         adds that region's stream service (--streams: every region's).
                         The first hosts the image repository and Cloud Build.
                         L4 regions: ${L4_REGIONS[*]}
                         RTX PRO 6000 regions: ${RTX_PRO_6000_REGIONS[*]}
                         A GPU region needs that GPU's Cloud Run quota (docs/deploy.md).
  --model PATH|GS_URI    local weights file (uploaded), or gs://bucket/path/best.pt (used as is);
                         PyTorch weights (.pt) that Ultralytics loads, with a task and class names

Options:
  --name NAME            base name of every resource (default: yolo)
  --min-instances N      warm instances in every region (default: 1 per GPU region, each a GPU
                         billed all the time; 0 per CPU region)
  --max-instances N      most instances per region (default: 3 GPU, 10 CPU)
  --concurrency N        requests per instance at once (default: 8 GPU, 4 CPU)
  --canary PERCENT       send PERCENT (1-99) of the traffic to the new release, the rest to the
                         deployed one; then promote.sh or rollback.sh
  --domains LIST         comma-separated domains: also create a global HTTPS load balancer
                         with a Google-managed certificate in front of all regions
  --model-id ID          ID accepted at POST /api/models/ID/predict
  --models ID=W,...      more models beside --model, each at its own id, loaded on demand
                         (docs/models.md): W is a local .pt (uploaded like --model) or
                         gs://bucket/object.pt (the service account may read that object)
  --engine ENGINE        the server's ENGINE in every region: default (OpenVINO in f32 on CPU
                         regions: Ultralytics' answers within 1e-3 px, faster; PyTorch on GPU
                         regions), pytorch (Ultralytics' answers bit for bit), onnx, openvino,
                         tensorrt, or auto (OpenVINO on CPU regions, TensorRT fp16 on GPU
                         regions). An exported engine is built once and stored next to gs://
                         weights, where the service account may then create objects under
                         OBJECT.engines/ only
  --bake-weights         copy the weights into the image (fastest cold start, bigger image)
  --zonal-redundancy     keep GPU zonal redundancy on (dearer; default: off)
  --http1                name the container port http1: Cloud Run downgrades requests to
                         HTTP/1.1 and refuses those over 32 MiB (default: h2c, HTTP/2 end to
                         end with no such cap; --http2 says so explicitly)
  --streams              live camera streams over a WebSocket in every region: a second service
                         beside each endpoint, NAME-streams, same image and model, its port
                         http1 (WebSockets need HTTP/1.1), request timeout 3600 s, session
                         affinity, one request slot per open stream; it scales from 0
                         (docs/streams-cloud-run.md). Its URL, as wss://HOST/stream, is printed
  --max-streams N        open streams per stream-service instance, 1-1000 (the server's
                         MAX_STREAMS and the service's concurrency; default: 16 on a GPU,
                         2 per vCPU on the CPU)
  --dry-run              print the exact commands instead of running them; needs neither
                         gcloud nor terraform nor a login, and touches no cloud resource
  -h, --help             show this help

Needs gcloud (logged in: gcloud auth login), Application Default Credentials for Terraform
(gcloud auth application-default login), terraform >= 1.9, python3, and the project's virtualenv
with Ultralytics for the model check (make install; YOLO_PYTHON=/path/to/python to use another).
EOF
}

# refuse_model REASON: the one line that says why MODEL cannot be served, and what to give instead.
refuse_model() {
	printf "error: --model %s cannot be served: %s; give the best.pt your training wrote (e.g. runs/detect/train/weights/best.pt)\n" "$MODEL" "$1" >&2
	exit 2
}

REGIONS_ARG="" MODEL="" MIN_INSTANCES="" MAX_INSTANCES="" CONCURRENCY="" CANARY="" DOMAINS_ARG="" MODEL_ID="" MODELS_ARG="" ENGINE=default BAKE=0 ZONAL_REDUNDANCY=0 HTTP2=1 STREAMS=0 MAX_STREAMS=""

parse_options "--project=PROJECT --regions=REGIONS_ARG --model=MODEL --models=MODELS_ARG --name=NAME
	--min-instances=MIN_INSTANCES --max-instances=MAX_INSTANCES --concurrency=CONCURRENCY --canary=CANARY
	--domains=DOMAINS_ARG --model-id=MODEL_ID --engine=ENGINE --bake-weights:BAKE=1 --zonal-redundancy:ZONAL_REDUNDANCY=1
	--http1:HTTP2=0 --http2:HTTP2=1 --streams:STREAMS=1 --max-streams=MAX_STREAMS --dry-run:DRY_RUN=1" "$@"

# ---- validate every argument before touching anything ----------------------------------------
[[ -n $PROJECT ]] || usage_error "--project is required (make deploy PROJECT=...)"
valid_project "$PROJECT" || usage_error "--project '$PROJECT' is not a valid project ID (6-30 lowercase letters, digits, hyphens; starts with a letter)"
valid_name "$NAME" || usage_error "--name '$NAME' must be 2-20 lowercase letters, digits or hyphens, starting with a letter"
[[ -n $REGIONS_ARG ]] || usage_error "--regions is required, e.g. --regions us-central1:nvidia-l4,europe-west3 (make deploy REGIONS=...)"
[[ ! $REGIONS_ARG =~ (^,|,,|,$) ]] || usage_error "--regions has an empty entry: '$REGIONS_ARG'"
IFS=',' read -r -a REGION_SPECS <<<"$REGIONS_ARG"
# ACCELERATORS[i] is REGIONS[i]'s: none, nvidia-l4 or nvidia-rtx-pro-6000; WITH_STREAMS[i] is 1 where it has a stream
# service (:streams, or --streams for all). REGION:gpu (an L4) and REGION:cpu are kept from when the L4 was the only
# GPU, for the scripts that use them.
REGIONS=() ACCELERATORS=() WITH_STREAMS=()
seen=" "
for spec in "${REGION_SPECS[@]}"; do
	[[ -n $spec ]] || usage_error "--regions has an empty entry: '$REGIONS_ARG'"
	r=${spec%%:*} accelerator="" streams=$STREAMS words=()
	[[ $spec != *: ]] || usage_error "--regions: '$spec' ends with ':'"
	[[ $spec != *:* ]] || IFS=':' read -r -a words <<<"${spec#*:}"
	for word in "${words[@]}"; do
		case $word in
		cpu | none | gpu | nvidia-l4 | nvidia-rtx-pro-6000)
			[[ -z $accelerator ]] || usage_error "--regions: '$spec' names two accelerators"
			accelerator=$word
			;;
		streams) streams=1 ;;
		*) usage_error "--regions: '$spec' must be REGION or REGION:cpu (CPU), REGION:nvidia-l4 or REGION:gpu (NVIDIA L4), or REGION:nvidia-rtx-pro-6000 (NVIDIA RTX PRO 6000), each optionally followed by :streams (a stream service beside the endpoint)" ;;
		esac
	done
	case $accelerator in
	"" | cpu) accelerator=none ;;
	gpu) accelerator=nvidia-l4 ;;
	esac
	check_region "$r"
	[[ $accelerator == none ]] || check_gpu_region "$accelerator" "$r"
	[[ $seen != *" $r "* ]] || usage_error "region $r is given twice"
	seen+="$r "
	REGIONS+=("$r")
	ACCELERATORS+=("$accelerator")
	WITH_STREAMS+=("$streams")
done
[[ -n $MODEL ]] || usage_error "--model is required: a local weights file or gs://bucket/path/best.pt (make deploy MODEL=...)"
if [[ $MODEL == gs://* ]]; then
	[[ $MODEL =~ ^gs://([a-z0-9][a-z0-9._-]{1,61}[a-z0-9])/(.*[^/])$ ]] || usage_error "--model '$MODEL' is not a gs://bucket/object URI"
	MODEL_GS_BUCKET=${BASH_REMATCH[1]}
	MODEL_GS_OBJECT=${BASH_REMATCH[2]}
	# What can be known without downloading: the server loads the object with YOLO(path), which
	# takes PyTorch weights by their suffix, and an exported engine (ENGINE) starts from a .pt.
	[[ $MODEL_GS_OBJECT == *.pt ]] || refuse_model "${MODEL_GS_OBJECT##*/} is not PyTorch weights (.pt)"
else
	[[ -f $MODEL ]] || usage_error "--model '$MODEL' is not a file (give a local weights file or a gs:// URI)"
	[[ -r $MODEL && -s $MODEL ]] || usage_error "--model '$MODEL' is empty or unreadable"
	[[ $MODEL == *.pt ]] || refuse_model "$(basename "$MODEL") is not PyTorch weights (.pt)"
fi
for pair in "min-instances:$MIN_INSTANCES" "max-instances:$MAX_INSTANCES" "concurrency:$CONCURRENCY" "canary:$CANARY" "max-streams:$MAX_STREAMS"; do
	[[ -z ${pair#*:} || ${pair#*:} =~ ^[0-9]+$ ]] || usage_error "--${pair%%:*} must be a whole number, got '${pair#*:}'"
done
[[ -z $MIN_INSTANCES ]] || ((MIN_INSTANCES <= 100)) || usage_error "--min-instances must be at most 100"
[[ -z $MAX_INSTANCES ]] || ((MAX_INSTANCES >= 1 && MAX_INSTANCES <= 1000)) || usage_error "--max-instances must be 1-1000"
[[ -z $MIN_INSTANCES || -z $MAX_INSTANCES ]] || ((MAX_INSTANCES >= MIN_INSTANCES)) || usage_error "--max-instances ($MAX_INSTANCES) is below --min-instances ($MIN_INSTANCES)"
[[ -z $CONCURRENCY ]] || ((CONCURRENCY >= 1 && CONCURRENCY <= 1000)) || usage_error "--concurrency must be 1-1000"
[[ -z $CANARY ]] || ((CANARY >= 1 && CANARY <= 99)) || usage_error "--canary must be a percentage from 1 to 99 (make promote sends everything to the new release)"
STREAM_REGIONS=()
for i in "${!REGIONS[@]}"; do ((!WITH_STREAMS[i])) || STREAM_REGIONS+=("${REGIONS[$i]}"); done
[[ -z $MAX_STREAMS ]] || ((MAX_STREAMS >= 1 && MAX_STREAMS <= 1000)) || usage_error "--max-streams must be 1-1000 (Cloud Run's most concurrent requests per instance)"
[[ -z $MAX_STREAMS || ${#STREAM_REGIONS[@]} -gt 0 ]] || usage_error "--max-streams sets the stream services' MAX_STREAMS: add --streams (every region) or REGION:streams"
DOMAINS=()
if [[ -n $DOMAINS_ARG ]]; then
	IFS=',' read -r -a DOMAINS <<<"$DOMAINS_ARG"
	for d in "${DOMAINS[@]}"; do
		[[ $d =~ ^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$ ]] || usage_error "--domains: '$d' is not a lowercase domain name such as api.example.com"
	done
fi
[[ $MODEL_ID =~ ^[A-Za-z0-9_-]{0,64}$ ]] || usage_error "--model-id may only contain letters, digits, underscores and hyphens"
# --models id=weights,...: more models beside --model (docs/models.md), each a local .pt (uploaded to the weights
# bucket like --model) or a gs://bucket/object.pt (used where it is; the service account is granted read on it).
MODEL_IDS=() MODEL_SOURCES=()
if [[ -n $MODELS_ARG ]]; then
	IFS=',' read -r -a entries <<<"$MODELS_ARG"
	for entry in "${entries[@]}"; do
		id=${entry%%=*} source=${entry#*=}
		[[ $entry == *=* && $id =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$ ]] || usage_error "--models: '$entry' is not id=weights (an id is letters, digits, '.', '_', '-')"
		[[ " ${MODEL_IDS[*]} " != *" $id "* ]] || usage_error "--models: '$id' is given twice"
		if [[ $source == gs://* ]]; then
			[[ $source =~ ^gs://[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]/.*[^/]\.pt$ ]] || usage_error "--models: '$source' is not a gs://bucket/object.pt URI"
		else
			[[ -f $source && -r $source && -s $source ]] || usage_error "--models: '$source' is not a readable file (give a local weights file or a gs:// URI)"
			[[ $source == *.pt ]] || usage_error "--models: $(basename "$source") is not PyTorch weights (.pt)"
		fi
		MODEL_IDS+=("$id")
		MODEL_SOURCES+=("$source")
	done
fi
case $ENGINE in
default | pytorch | onnx | openvino | tensorrt | auto) ;;
*) usage_error "--engine must be default, pytorch, onnx, openvino, tensorrt or auto, got '$ENGINE'" ;;
esac

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

# ---- 0. The weights can be served ----------------------------------------------------------------
# Loaded here as the server will load them (Ultralytics' YOLO(path)), on the CPU and offline, before
# anything is built or applied: weights that cannot serve are refused now, not at a cold start.
# gs:// weights: a dry run has checked the suffix only (above); a real run downloads them first.
MODEL_PYTHON=${YOLO_PYTHON:-$REPO_ROOT/.venv/bin/python}
[[ -x $MODEL_PYTHON ]] || env_error "the model check needs the project's virtualenv with Ultralytics ($MODEL_PYTHON not found): run make install, or set YOLO_PYTHON to a Python that has ultralytics"
CHECKED_MODEL=$MODEL
if [[ $MODEL == gs://* ]]; then
	CHECKED_MODEL="$WORK/model/${MODEL_GS_OBJECT##*/}"
	mkdir -p "$WORK/model"
	if ((DRY_RUN)); then
		printf '%s  # a real run downloads them and loads them with Ultralytics before anything else\n' "$(shell_quote gcloud storage cp "$MODEL" "$CHECKED_MODEL" --project="$PROJECT")"
	else
		run gcloud storage cp "$MODEL" "$CHECKED_MODEL" --project="$PROJECT" >&2 || die "could not download $MODEL to check it (gcloud storage cp failed)"
	fi
fi
if [[ $MODEL != gs://* ]] || ((!DRY_RUN)); then
	mkdir -p "$WORK/ultralytics"
	verdict=$(env YOLO_OFFLINE=1 YOLO_AUTOINSTALL=false YOLO_CONFIG_DIR="$WORK/ultralytics" CUDA_VISIBLE_DEVICES="" \
		"$MODEL_PYTHON" "$SCRIPTS_DIR/check_model.py" "$CHECKED_MODEL" 2>"$WORK/model-check.log") && status=0 || status=$?
	verdict=${verdict##*$'\n'} # its last line
	if [[ -z $verdict && -s "$WORK/model-check.log" ]]; then
		verdict=$(<"$WORK/model-check.log")
		verdict=${verdict##*$'\n'}
	fi
	case $status in
	0) note "model: $MODEL ($verdict)" ;;
	1) refuse_model "$verdict" ;;
	*) env_error "the model check could not run with $MODEL_PYTHON: $verdict (run make install, or set YOLO_PYTHON)" ;;
	esac
fi

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

DEPLOYED=0
if fetch_tfvars && ((!DRY_RUN)); then
	[[ -z $(python3 "$TFVARS_PY" get "$VARFILE" deployed) ]] || DEPLOYED=1
fi
# A canary needs a deployed release to keep; a dry run assumes there is one.
if [[ -n $CANARY ]] && ((DRY_RUN)); then DEPLOYED=1; fi
if [[ -n $CANARY ]] && ((!DEPLOYED)); then
	die "--canary needs a deployed release to keep serving (nothing is deployed as '$NAME' in $PROJECT yet): deploy once without --canary"
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
# Each of --models: a gs:// URI as given, a local file at models/SHA/NAME in the weights bucket.
MODEL_OBJECTS=()
for source in "${MODEL_SOURCES[@]}"; do
	if [[ $source == gs://* ]]; then
		MODEL_OBJECTS+=("$source")
	else
		base=$(basename "$source")
		[[ $base =~ ^[A-Za-z0-9._-]+$ ]] || base=best.pt
		MODEL_OBJECTS+=("models/$(sha256 <"$source" | cut -c1-16)/$base")
	fi
done
models_json() { # {"helmets":"models/SHA/helmets.pt","poses":"gs://bucket/poses.pt"}
	local out="" i
	for i in "${!MODEL_IDS[@]}"; do
		out+="\"${MODEL_IDS[$i]}\":\"${MODEL_OBJECTS[$i]}\","
	done
	printf '{%s}' "${out%,}"
}

# The image flavours the regions need: one image each (cloudbuild.yaml), named endpoint-FLAVOUR.
HAS_CPU=0 HAS_L4=0 HAS_RTX=0
for accelerator in "${ACCELERATORS[@]}"; do
	case $accelerator in
	nvidia-l4) HAS_L4=1 ;;
	nvidia-rtx-pro-6000) HAS_RTX=1 ;;
	*) HAS_CPU=1 ;;
	esac
done

regions_json() { # {"us-central1":{"accelerator":"nvidia-l4"},"europe-west3":{"accelerator":"none"}}
	local out="" i
	for i in "${!REGIONS[@]}"; do
		out+="\"${REGIONS[$i]}\":{\"accelerator\":\"${ACCELERATORS[$i]}\"$( ((!WITH_STREAMS[i])) || printf ',"streams":true')},"
	done
	printf '{%s}' "${out%,}"
}
# --min-instances, --max-instances, --concurrency apply to every region when given; otherwise
# each accelerator keeps its own defaults (infra/variables.tf cpu_defaults, gpu_defaults,
# rtx_pro_6000_defaults).
defaults_json() {
	local out=""
	[[ -z $MIN_INSTANCES ]] || out+="\"min_instances\":$MIN_INSTANCES,"
	[[ -z $MAX_INSTANCES ]] || out+="\"max_instances\":$MAX_INSTANCES,"
	[[ -z $CONCURRENCY ]] || out+="\"max_concurrency\":$CONCURRENCY,"
	printf '{%s}' "${out%,}"
}
base_vars() { # base_vars CPU_IMAGE L4_IMAGE RTX_IMAGE -> the deployment's variables as one JSON object
	printf '{"project_id":"%s","name":"%s","regions":%s,"artifact_registry_location":"%s","images":{"cpu":"%s","nvidia-l4":"%s","nvidia-rtx-pro-6000":"%s"},"weights_bucket":"%s","model_object":"%s","model_path_in_image":"%s","model_id":"%s","models":%s,"engine":"%s","cpu_defaults":%s,"gpu_defaults":%s,"rtx_pro_6000_defaults":%s,"stream_defaults":{%s},"gpu_zonal_redundancy_disabled":%s,"http2":%s,"lb_domains":%s}' \
		"$PROJECT" "$NAME" "$(regions_json)" "$REGISTRY_REGION" "$1" "$2" "$3" "$WEIGHTS_BUCKET_VAR" "$MODEL_OBJECT" "$MODEL_PATH_IN_IMAGE" "$MODEL_ID" "$(models_json)" "$ENGINE" \
		"$(defaults_json)" "$(defaults_json)" "$(defaults_json)" "${MAX_STREAMS:+\"max_streams\":$MAX_STREAMS}" "$(bool $((!ZONAL_REDUNDANCY)))" "$(bool "$HTTP2")" "$(json_list "${DOMAINS[@]}")"
}

# ---- 2. Shared resources, first deployment only ---------------------------------------------
if ((!DEPLOYED)); then
	note "== 2/5 shared resources (first deployment): APIs, service accounts, buckets, secret, repository"
	run python3 "$TFVARS_PY" merge "$VARFILE" "$(base_vars "" "" "")"
	tf_apply "$VARFILE"
	push_tfvars
else
	note "== 2/5 shared resources exist"
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
	if [[ $MODEL == gs://* ]] && ((DRY_RUN)); then
		run gcloud storage cp "$MODEL" "$CONTEXT/weights/best.pt" --project="$PROJECT"
	else
		cp "$CHECKED_MODEL" "$CONTEXT/weights/best.pt" # the very file the model check loaded
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
for i in "${!MODEL_IDS[@]}"; do
	if [[ ${MODEL_OBJECTS[$i]} == gs://* ]]; then
		run gcloud storage objects describe "${MODEL_OBJECTS[$i]}" --project="$PROJECT" --format='value(size)'
	elif ! exists gcloud storage objects describe "gs://$WEIGHTS_BUCKET/${MODEL_OBJECTS[$i]}" --project="$PROJECT"; then
		run gcloud storage cp "${MODEL_SOURCES[$i]}" "gs://$WEIGHTS_BUCKET/${MODEL_OBJECTS[$i]}" --project="$PROJECT"
	fi
done
((${#MODEL_IDS[@]} == 0)) || note "models beside the default: ${MODEL_IDS[*]} (loaded on demand; MAX_LOADED_MODELS, MODEL_MEMORY_MB: docs/models.md)"

# ---- 4. Images --------------------------------------------------------------------------------
note "== 4/5 images"
# The build context is what .dockerignore lets through (its "!" lines: the Dockerfile's own list of
# what the image needs), so it follows the Dockerfile; the weights are added above when baked.
CONTEXT_PATHS=(.dockerignore)
while IFS= read -r line || [[ -n $line ]]; do
	[[ $line == '!'* ]] || continue
	path=${line#!}
	path=${path%/}
	[[ $path == weights/* ]] && continue
	[[ -e $REPO_ROOT/$path ]] || die "$path (named in .dockerignore) is missing from $REPO_ROOT: the image cannot be built"
	CONTEXT_PATHS+=("$path")
done <"$REPO_ROOT/.dockerignore"
tar -C "$REPO_ROOT" --exclude=__pycache__ --exclude='*.pyc' -cf - "${CONTEXT_PATHS[@]}" | tar -C "$CONTEXT" -xf -
# The tag is a hash of the build context's contents: the same sources are built once.
TAG=$(cd "$CONTEXT" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 "${SHA256[@]}" | sha256 | cut -c1-16)
cp "$INFRA_DIR/cloudbuild.yaml" "$CONTEXT/"
REPOSITORY="${REGISTRY_REGION}-docker.pkg.dev/${PROJECT}/${NAME}"
CPU_IMAGE="" L4_IMAGE="" RTX_IMAGE="" BUILD_CPU="" BUILD_L4="" BUILD_RTX=""
((HAS_CPU)) && CPU_IMAGE="$REPOSITORY/endpoint-cpu:${TAG}"
((HAS_L4)) && L4_IMAGE="$REPOSITORY/endpoint-nvidia-l4:${TAG}"
((HAS_RTX)) && RTX_IMAGE="$REPOSITORY/endpoint-nvidia-rtx-pro-6000:${TAG}"
if [[ -n $CPU_IMAGE ]] && ! exists gcloud artifacts docker images describe "$CPU_IMAGE" --project="$PROJECT"; then BUILD_CPU=$CPU_IMAGE; fi
if [[ -n $L4_IMAGE ]] && ! exists gcloud artifacts docker images describe "$L4_IMAGE" --project="$PROJECT"; then BUILD_L4=$L4_IMAGE; fi
if [[ -n $RTX_IMAGE ]] && ! exists gcloud artifacts docker images describe "$RTX_IMAGE" --project="$PROJECT"; then BUILD_RTX=$RTX_IMAGE; fi
if [[ -n $BUILD_CPU$BUILD_L4$BUILD_RTX ]]; then
	run gcloud builds submit "$CONTEXT" --project="$PROJECT" --region="$REGISTRY_REGION" \
		--config="$CONTEXT/cloudbuild.yaml" --substitutions="_CPU_IMAGE=$BUILD_CPU,_NVIDIA_L4_IMAGE=$BUILD_L4,_NVIDIA_RTX_PRO_6000_IMAGE=$BUILD_RTX,_WEIGHTS=$WEIGHTS_MODE" \
		--service-account="projects/$PROJECT/serviceAccounts/$BUILD_SA" --gcs-source-staging-dir="gs://$BUILD_BUCKET/source"
else
	note "images already built: ${CPU_IMAGE:-} ${L4_IMAGE:-} ${RTX_IMAGE:-}"
fi

# ---- 5. Every region --------------------------------------------------------------------------
note "== 5/5 Cloud Run services in ${REGION_SPECS[*]}"
case $ENGINE in
default) note "engine: default (OpenVINO in f32 on CPU regions, built by the first instance while PyTorch serves; PyTorch on GPU regions; --engine pytorch for Ultralytics' answers bit for bit)" ;;
pytorch) note "engine: pytorch (Ultralytics' exact answers; --engine auto for OpenVINO on CPU regions, TensorRT fp16 on GPU regions)" ;;
auto) note "engine: auto (OpenVINO on CPU regions, TensorRT fp16 on GPU regions), built by the first instance; PyTorch serves until it is ready" ;;
*) note "engine: $ENGINE, built by the first instance; PyTorch serves until it is ready" ;;
esac
# What exports: any engine but PyTorch, and the default wherever a region runs on the CPU.
if [[ $ENGINE != pytorch && ($ENGINE != default || $HAS_CPU == 1) ]]; then
	if ((BAKE)); then
		note "engine: weights baked into the image, so each instance builds its own engine (on its disk)"
	else
		note "engine: stored at gs://${WEIGHTS_BUCKET_VAR:-$WEIGHTS_BUCKET}/$MODEL_OBJECT.engines/; the service account may create objects under that prefix only (an IAM condition)"
		[[ -z $WEIGHTS_BUCKET_VAR ]] || note "engine: IAM conditions need uniform bucket-level access on gs://$WEIGHTS_BUCKET_VAR"
	fi
fi
if ((HTTP2)); then
	note "protocol: HTTP/2 end to end (container port h2c: no 32 MiB request cap; --http1 for HTTP/1.1)"
else
	note "protocol: HTTP/1.1 (container port http1: Cloud Run refuses requests over 32 MiB)"
fi
if ((${#STREAM_REGIONS[@]})); then
	per_instance="MAX_STREAMS=${MAX_STREAMS:-16 on a GPU, 2 per vCPU on the CPU}"
	note "streams: a stream service ($NAME-streams) beside the endpoint in ${STREAM_REGIONS[*]}: container port http1 (WebSockets need HTTP/1.1 end to end), request timeout 3600 s (clients reconnect after it), session affinity, $per_instance open streams per instance, scaling from 0; connect to wss://HOST/stream at its printed URL"
fi
if ((HAS_L4 + HAS_RTX)); then
	quota_note="GPU regions need that GPU's Cloud Run quota in each region (docs/deploy.md, GPU quota); without it Terraform's apply fails with a quota error"
	((!${#STREAM_REGIONS[@]})) || quota_note+=" (a GPU region's stream service draws on the same quota: its instances and the endpoint's together)"
	note "$quota_note"
fi
if [[ -n $CANARY ]]; then
	note "canary: $CANARY% of every running region's traffic to the new release (revision tag 'canary', its own URL), $((100 - CANARY))% stays on the deployed one; then make promote or make rollback"
	run python3 "$TFVARS_PY" canary "$VARFILE" "$CANARY" "$(base_vars "$CPU_IMAGE" "$L4_IMAGE" "$RTX_IMAGE")"
else
	run python3 "$TFVARS_PY" merge "$VARFILE" "$(base_vars "$CPU_IMAGE" "$L4_IMAGE" "$RTX_IMAGE")"
fi
tf_apply "$VARFILE"
push_tfvars

report_outputs
((!DRY_RUN)) || note "(dry run: nothing was changed)"
