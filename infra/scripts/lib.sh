# shellcheck shell=bash disable=SC2034  # the variables set here are read by the scripts that source it
# Shared by every script here (deploy, start, stop, status, promote, rollback, batch); sourced, never run.
#
# Conventions
#   * Every command that touches Google Cloud or Terraform goes through `run` (or `exists`, `pipe_run`).
#     With --dry-run they print the exact command line on stdout instead of running it, so the
#     dry run needs neither gcloud nor terraform nor a login. Progress and notes go to stderr.
#   * Exit status: 2 = bad arguments, 3 = a required tool is missing or not logged in,
#     1 = a command failed.

INFRA_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPO_ROOT=$(cd "$INFRA_DIR/.." && pwd)
DEPLOY_DIR="$INFRA_DIR/deploy"
SCRIPTS_DIR="$INFRA_DIR/scripts"
TFVARS_PY="$SCRIPTS_DIR/tfvars.py"

# Cloud Run regions with each GPU for services. Keep equal to the default of `gpu_regions` in
# infra/variables.tf (tests/test_scripts.py checks). YOLO_GPU_REGIONS="a b" overrides the L4's list
# (its name from when the L4 was the only GPU), YOLO_RTX_PRO_6000_REGIONS="a b" the RTX PRO 6000's;
# override the Terraform variable too. https://cloud.google.com/run/docs/configuring/services/gpu#supported-regions
# and, for both lists, https://docs.cloud.google.com/run/docs/configuring/workerpools/gpu
read -r -a L4_REGIONS <<<"${YOLO_GPU_REGIONS:-us-central1 us-east4 europe-west1 europe-west4 asia-southeast1 asia-south1}"
read -r -a RTX_PRO_6000_REGIONS <<<"${YOLO_RTX_PRO_6000_REGIONS:-us-central1 europe-west4 asia-southeast1 asia-south2}"
# Every Cloud Run region, for CPU endpoints. Keep equal to the default of `cloud_run_regions` in
# infra/variables.tf (tests/test_scripts.py checks); YOLO_CLOUD_RUN_REGIONS="a b" overrides both.
# https://cloud.google.com/run/docs/locations
read -r -a CLOUD_RUN_REGIONS <<<"${YOLO_CLOUD_RUN_REGIONS:-asia-east1 asia-northeast1 asia-northeast2 europe-north1 europe-southwest1 europe-west1 europe-west4 europe-west8 europe-west9 me-west1 us-central1 us-east1 us-east4 us-east5 us-south1 us-west1 africa-south1 asia-east2 asia-northeast3 asia-southeast1 asia-southeast2 asia-south1 asia-south2 australia-southeast1 australia-southeast2 europe-central2 europe-west10 europe-west12 europe-west2 europe-west3 europe-west6 me-central1 me-central2 northamerica-northeast1 northamerica-northeast2 southamerica-east1 southamerica-west1 us-west2 us-west3 us-west4}"

DRY_RUN=0
PROJECT=""
NAME="yolo"

note() { printf '%s\n' "$*" >&2; }
die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}
usage_error() {
	printf 'error: %s\n' "$*" >&2
	printf "Run '%s --help' for usage.\n" "$(basename "$0")" >&2
	exit 2
}
env_error() {
	printf 'error: %s\n' "$*" >&2
	exit 3
}

# Quote one command line the way a shell would need it, readably: bare words stay bare.
shell_quote() {
	local out="" arg
	for arg in "$@"; do
		if [[ $arg =~ ^[A-Za-z0-9_./:=@,+%^-]+$ ]]; then
			out+="$arg "
		else
			out+="'${arg//\'/\'\\\'\'}' "
		fi
	done
	printf '%s' "${out% }"
}

# run CMD...: print (dry run) or log and execute.
run() {
	if ((DRY_RUN)); then
		printf '%s\n' "$(shell_quote "$@")"
		return 0
	fi
	note "+ $(shell_quote "$@")"
	"$@"
}

# capture CMD...: like run, but for a command whose stdout the caller reads. In a dry run it
# prints the command and outputs nothing.
capture() {
	if ((DRY_RUN)); then
		printf '%s\n' "$(shell_quote "$@")" >&3
		return 0
	fi
	note "+ $(shell_quote "$@")"
	"$@"
}
exec 3>&1

# exists CMD...: true when CMD succeeds, quietly. A dry run shows the check and assumes the thing
# is missing, so it prints what a first deployment would do.
exists() {
	if ((DRY_RUN)); then
		printf '%s  # exists? if not:\n' "$(shell_quote "$@")"
		return 1
	fi
	"$@" >/dev/null 2>&1
}

# sha256sum on Linux, shasum on macOS (whose bash is 3.2: no associative arrays in these scripts).
if command -v sha256sum >/dev/null 2>&1; then SHA256=(sha256sum); else SHA256=(shasum -a 256); fi
sha256() { "${SHA256[@]}" | cut -d' ' -f1; }

valid_project() { [[ $1 =~ ^[a-z][a-z0-9-]{4,28}[a-z0-9]$ ]]; }
valid_name() { [[ $1 =~ ^[a-z][a-z0-9-]{0,18}[a-z0-9]$ ]]; }
# gpu_regions ACCELERATOR: the regions that offer it, space-separated.
gpu_regions() {
	case $1 in
	nvidia-l4) printf '%s' "${L4_REGIONS[*]}" ;;
	nvidia-rtx-pro-6000) printf '%s' "${RTX_PRO_6000_REGIONS[*]}" ;;
	esac
}
# gpu_label ACCELERATOR: what people call it.
gpu_label() {
	case $1 in
	nvidia-l4) printf 'NVIDIA L4' ;;
	nvidia-rtx-pro-6000) printf 'NVIDIA RTX PRO 6000' ;;
	*) printf 'CPU' ;;
	esac
}
is_gpu_region() { # is_gpu_region ACCELERATOR REGION
	local r
	for r in $(gpu_regions "$1"); do [[ $r == "$2" ]] && return 0; done
	return 1
}
is_cloud_run_region() {
	local r
	for r in "${CLOUD_RUN_REGIONS[@]}"; do [[ $r == "$1" ]] && return 0; done
	return 1
}
check_region() {
	is_cloud_run_region "$1" || usage_error "'$1' is not a Cloud Run region; see https://cloud.google.com/run/docs/locations (set YOLO_CLOUD_RUN_REGIONS to override the list)"
}
check_gpu_region() { # check_gpu_region ACCELERATOR REGION
	local override=YOLO_GPU_REGIONS
	[[ $1 == nvidia-l4 ]] || override=YOLO_RTX_PRO_6000_REGIONS
	is_gpu_region "$1" "$2" || usage_error "region '$2' has no Cloud Run $(gpu_label "$1") GPUs ($1): write $2 (a CPU endpoint) or choose a region that has them: $(gpu_regions "$1") (set $override to override the list)"
}

# Names shared with the Terraform module (infra/main.tf, infra/locals.tf) — same formulas.
set_names() {
	STATE_BUCKET="${PROJECT}-${NAME}-tfstate"
	STATE_PREFIX="${NAME}"
	TFVARS_OBJECT="gs://${STATE_BUCKET}/${NAME}/deploy.tfvars.json"
	WEIGHTS_BUCKET="${PROJECT}-${NAME}-weights"
	BUILD_BUCKET="${PROJECT}-${NAME}-build"
	SECRET="${NAME}-api-keys"
	BUILD_SA="${NAME}-build@${PROJECT}.iam.gserviceaccount.com"
}

# require_tools TOOL...: each must be on PATH, and gcloud/terraform must be logged in. Skipped in a
# dry run, which runs neither.
require_tools() {
	((DRY_RUN)) && return 0
	local tool
	for tool in "$@"; do
		if ! command -v "$tool" >/dev/null 2>&1; then
			case $tool in
			gcloud) env_error "gcloud not found on PATH. Install the Google Cloud CLI (https://cloud.google.com/sdk/docs/install), or add --dry-run to only print the commands." ;;
			terraform) env_error "terraform not found on PATH. Install Terraform >= 1.9 (https://developer.hashicorp.com/terraform/install), or add --dry-run to only print the commands." ;;
			*) env_error "$tool not found on PATH; it is needed to run this script." ;;
			esac
		fi
	done
	for tool in "$@"; do
		case $tool in
		gcloud)
			local account
			account=$(gcloud auth list --filter=status:ACTIVE --format='value(account)' 2>/dev/null | head -n 1) || true
			[[ -n $account ]] || env_error "gcloud is not logged in. Run: gcloud auth login"
			note "gcloud account: $account"
			;;
		terraform)
			local version
			version=$(terraform version -json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["terraform_version"])' 2>/dev/null) || version=""
			if [[ -n $version ]] && ! python3 -c 'import sys; v=tuple(int(x) for x in sys.argv[1].split(".")[:2]); sys.exit(v < (1, 9))' "$version"; then
				env_error "terraform $version is too old; this configuration needs Terraform >= 1.9."
			fi
			# Terraform's google provider authenticates with Application Default Credentials.
			gcloud auth application-default print-access-token >/dev/null 2>&1 ||
				env_error "Terraform has no Google credentials. Run: gcloud auth application-default login"
			;;
		esac
	done
}

# The project must exist and be visible to the account.
check_project_access() {
	((DRY_RUN)) && return 0
	gcloud projects describe "$PROJECT" --format='value(projectId)' >/dev/null 2>&1 ||
		env_error "project '$PROJECT' does not exist or your account cannot see it (gcloud projects describe $PROJECT)."
}

WORK=""
make_workdir() {
	WORK=$(mktemp -d "${TMPDIR:-/tmp}/yolo-${NAME}.XXXXXX")
	# YOLO_KEEP_WORKDIR=1 keeps it (the tests feed the dry run's files to the real gcloud parser).
	[[ -n ${YOLO_KEEP_WORKDIR:-} ]] && return 0
	# shellcheck disable=SC2064  # expand now: the trap must remove this very directory
	trap "rm -rf '$WORK'" EXIT
}

tf() { run terraform -chdir="$DEPLOY_DIR" "$@"; }

tf_init() {
	tf init -input=false -reconfigure -backend-config="bucket=${STATE_BUCKET}" -backend-config="prefix=${STATE_PREFIX}"
}

tf_apply() { # tf_apply VARFILE
	tf apply -input=false -auto-approve -var-file="$1"
}

# Fetch the deployment's variables (kept beside the state) into $WORK/deploy.tfvars.json.
# Returns 1 when there is no deployment yet.
fetch_tfvars() {
	if ((DRY_RUN)); then
		printf '%s  # variables of the existing deployment, if any\n' "$(shell_quote gcloud storage cp "$TFVARS_OBJECT" "$WORK/deploy.tfvars.json" --project="$PROJECT")"
		return 0
	fi
	gcloud storage cp "$TFVARS_OBJECT" "$WORK/deploy.tfvars.json" --project="$PROJECT" >/dev/null 2>&1
}

push_tfvars() {
	run gcloud storage cp "$WORK/deploy.tfvars.json" "$TFVARS_OBJECT" --project="$PROJECT"
}

# Poll URL/readyz until it answers 200 or TIMEOUT seconds pass.
wait_ready() { # wait_ready URL TIMEOUT
	local url=$1 timeout=$2 path=/readyz code="" deadline body
	if ((DRY_RUN)); then
		printf "%s  # every 5 s until it prints 200, for up to %s s\n" "$(shell_quote curl -sS -o /dev/null -w '%{http_code}' --max-time 10 "$url/readyz")" "$timeout"
		return 0
	fi
	body=$(mktemp "${TMPDIR:-/tmp}/readyz.XXXXXX")
	deadline=$((SECONDS + timeout))
	note "waiting for $url$path to answer 200 (up to ${timeout}s)..."
	while ((SECONDS < deadline)); do
		code=$(curl -sS -o "$body" -w '%{http_code}' --max-time 10 "$url$path" 2>/dev/null) || code="000"
		if [[ $code == 200 ]]; then
			rm -f "$body"
			note "ready: $url"
			return 0
		fi
		# Google's front end reserves some paths ending in "z" on run.app URLs (Cloud Run known
		# issues) and answers them itself. Cloud Run routes requests only to instances whose startup
		# probe (/readyz, inside the instance) passed, so then any answer from the service proves it.
		if [[ $code == 404 && $path == /readyz ]] && grep -q "That.s all we know" "$body" 2>/dev/null; then
			note "$url/readyz is answered by Google's front end, not the service; waiting for GET / instead"
			path=/
			continue
		fi
		sleep 5
	done
	rm -f "$body"
	die "$url$path still answers $code after ${timeout}s; see: gcloud run services logs read $NAME --project=$PROJECT"
}

# Without --project, a real run uses gcloud's configured project.
default_project() {
	[[ -n $PROJECT ]] && return 0
	if ((!DRY_RUN)) && command -v gcloud >/dev/null 2>&1; then
		PROJECT=$(gcloud config get-value project 2>/dev/null) || PROJECT=""
		[[ -n $PROJECT ]] && note "project: $PROJECT (from gcloud config)"
	fi
	[[ -n $PROJECT ]] || usage_error "--project is required (or set one with: gcloud config set project PROJECT)"
}

# parse_regions LIST: comma list -> REGIONS array, each a GPU region, none twice.
parse_regions() {
	local r seen=" "
	[[ -n $1 ]] || usage_error "--region is required, e.g. --region us-central1 (make ... REGION=...)"
	[[ ! $1 =~ (^,|,,|,$) ]] || usage_error "empty region in '$1'"
	IFS=',' read -r -a REGIONS <<<"$1"
	for r in "${REGIONS[@]}"; do
		[[ -n $r ]] || usage_error "empty region in '$1'"
		check_region "$r"
		[[ $seen != *" $r "* ]] || usage_error "region $r is given twice"
		seen+="$r "
	done
}

# The run.app URL of each running region, from Terraform's outputs, one "REGION URL" per line.
endpoint_urls() {
	if ((DRY_RUN)); then
		tf output -json endpoint_urls
		return 0
	fi
	terraform -chdir="$DEPLOY_DIR" output -json endpoint_urls |
		python3 -c 'import json,sys; [print(r, u) for r, u in sorted(json.load(sys.stdin).items())]'
}

# Print what the deployment serves now (URLs, traffic per region, dashboard) from Terraform's outputs.
report_outputs() {
	if ((DRY_RUN)); then
		tf output -json
		return 0
	fi
	terraform -chdir="$DEPLOY_DIR" output -json >"$WORK/outputs.json"
	python3 "$SCRIPTS_DIR/report.py" "$WORK/outputs.json" "$PROJECT" "$SECRET"
}

# The arguments of the scripts that act on a whole deployment (status, promote, rollback): --project, --name,
# --dry-run and --help (the calling script's own usage); then the names are checked and derived.
# parse_options SPEC ARGS...: every script's argument parser. SPEC is words: "--option=VAR" stores the option's
# value (given as "--option VALUE" or "--option=VALUE") in VAR; "--flag:VAR=VALUE" sets VAR to VALUE; "--", when
# SPEC has it, ends the options and leaves the rest in REST_ARGS. -h/--help prints usage(); anything else is exit 2.
parse_options() {
	local spec=" ${1//[$'\n\t']/ } " arg value inline target
	shift
	REST_ARGS=()
	while (($#)); do
		arg=$1 value="" inline=0
		case $arg in
		-h | --help)
			usage
			exit 0
			;;
		--)
			[[ $spec == *" -- "* ]] || usage_error "unknown argument: --"
			shift
			REST_ARGS=("$@")
			return
			;;
		--*=*) value=${arg#*=} arg=${arg%%=*} inline=1 ;;
		esac
		if [[ $spec == *" $arg="* ]]; then
			target=${spec#*" $arg="} target=${target%% *}
			if ((!inline)); then
				if (($# < 2)) || [[ $2 == --* ]]; then usage_error "$arg needs a value"; fi
				value=$2
				shift
			fi
			printf -v "$target" '%s' "$value"
		elif [[ $spec == *" $arg:"* ]]; then
			target=${spec#*" $arg:"} target=${target%% *}
			printf -v "${target%%=*}" '%s' "${target#*=}"
		else
			usage_error "unknown argument: $arg"
		fi
		shift
	done
}

check_deployment() { # the --name and --project every script but deploy.sh takes, checked; the names they give
	valid_name "$NAME" || usage_error "--name '$NAME' must be 2-20 lowercase letters, digits or hyphens"
	default_project
	valid_project "$PROJECT" || usage_error "--project '$PROJECT' is not a valid project ID"
	set_names
}

parse_deployment_args() {
	parse_options "--project=PROJECT --name=NAME --dry-run:DRY_RUN=1" "$@"
	check_deployment
}

end_canary() { # end_canary promote|rollback: Terraform owns traffic, so edit the canary variable and apply
	require_tools gcloud terraform python3
	check_project_access
	make_workdir

	fetch_tfvars || die "no deployment '$NAME' in project $PROJECT ($TFVARS_OBJECT not found): run make deploy first"
	run python3 "$TFVARS_PY" "$1" "$WORK/deploy.tfvars.json"
	tf_init
	tf_apply "$WORK/deploy.tfvars.json"
	push_tfvars
	report_outputs
}
