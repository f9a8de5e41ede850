"""The package users install: the wheel holds everything the source tree has, and every module imports from it.

The venv is an editable install of the source tree, so nothing else in the suite would notice a module or a data file
missing from the wheel (the image once shipped without function/dialects/ and could not start)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "function"
LOCK = ROOT / "tools" / "lock"


def run_check(site: Path, cwd: Path) -> subprocess.CompletedProcess:
    """The image's own build-time check on a wheel installed in `site`, from a folder with no source tree. `-S`: the
    venv's site-packages come in through PYTHONPATH, without its .pth files and so without the editable install."""
    import sysconfig

    path = f"{site}:{sysconfig.get_paths()['purelib']}"
    return subprocess.run([sys.executable, "-S", str(ROOT / "tools" / "image" / "check.py"), "none", "lock"],
                          cwd=cwd, env={"PYTHONPATH": path, "YOLO_OFFLINE": "1"}, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Built as the image builds it: from pyproject.toml and the tracked files of function/ only (a build/ folder
    left in the checkout by an earlier build would otherwise leak stale modules into the wheel)."""
    context, out = tmp_path_factory.mktemp("context"), tmp_path_factory.mktemp("wheel")
    for name in ["pyproject.toml", *source_files()]:
        (context / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, context / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(out), str(context)], check=True, timeout=300)
    (built,) = out.glob("yolo_cloud_run-*.whl")
    return built


def source_files() -> set[str]:
    tracked = subprocess.run(["git", "ls-files", "function"], cwd=ROOT, capture_output=True, text=True, check=True)
    return {line for line in tracked.stdout.splitlines() if "__pycache__" not in line}


def test_wheel_holds_every_file_of_the_source_tree(wheel):
    with zipfile.ZipFile(wheel) as archive:
        packaged = {name for name in archive.namelist() if name.startswith("function/")}
    expected = source_files()
    assert "function/dialects/platform.py" in expected and "function/static/index.html" in expected
    assert expected - packaged == set(), "in the source tree but not in the wheel"
    assert packaged - expected == set(), "in the wheel but not tracked in the source tree"


def test_every_module_imports_from_the_installed_wheel_outside_the_source_tree(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                    str(wheel)], check=True, timeout=300)
    check = run_check(target, tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    modules = sum(1 for path in SOURCE.rglob("*.py"))
    assert check.stdout.startswith(f"ok: {modules} modules of function"), check.stdout


def test_the_check_refuses_a_wheel_without_a_subpackage(wheel, tmp_path):
    """The check itself can fail: the wheel of the defect (no function/dialects/) is refused."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                    str(wheel)], check=True, timeout=300)
    for path in sorted((target / "function" / "dialects").rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    (target / "function" / "dialects").rmdir()
    check = run_check(target, tmp_path)
    assert check.returncode != 0 and "No module named 'function.dialects'" in check.stderr, check.stderr


def locked() -> dict[str, str]:
    pins = {}
    for name in ("torch.txt", "runtime.txt", "test.txt"):
        for line in (LOCK / name).read_text().splitlines():
            if line and not line.startswith((" ", "#")):
                package, _, version = line.split(" ")[0].partition("==")
                pins[package] = version
    return pins


def test_the_venv_is_exactly_the_lock():
    """`make install` installs the lock and nothing else: every locked version, no stray distribution."""
    from importlib.metadata import distributions

    installed = {d.metadata["Name"].lower().replace("_", "-"): d.version for d in distributions()}
    installed.pop("pip", None)
    assert installed.pop("yolo-cloud-run") == "0.1.0"
    assert installed == locked()


def test_every_locked_package_is_pinned_by_hash():
    for name in ("torch.txt", "runtime.txt", "test.txt"):
        blocks = (LOCK / name).read_text().split("\n", 2)[2].strip().split("\n")
        heads = [i for i, line in enumerate(blocks) if not line.startswith(" ")]
        for start, end in zip(heads, heads[1:] + [len(blocks)]):
            assert any("--hash=sha256:" in line for line in blocks[start + 1:end]), blocks[start]


def test_the_lock_has_headless_opencv_only():
    """Ultralytics asks for opencv-python (libGL, X11): the lock swaps in the headless build of the same cv2."""
    pins = locked()
    assert "opencv-python" not in pins and "opencv-python-headless" in pins


def test_the_entry_point_serves_by_default_and_refuses_an_unknown_command():
    helped = subprocess.run([sys.executable, "-m", "function", "--help"], capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "serve (the default)" in helped.stdout
    unknown = subprocess.run([sys.executable, "-m", "function", "predict"], capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 2 and "usage: python -m function [serve]" in unknown.stderr
    assert "unknown command: predict" in unknown.stderr
