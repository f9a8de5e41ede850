"""The image's build-time check, run from / against the installed package (never a source tree):

every module of `function` imports (dialects included), its data files are there, and torch is the build the
accelerator needs. Usage: python check.py ACCELERATOR TORCH_SOURCE
"""

import importlib
import importlib.metadata
import importlib.resources
import importlib.util
import pkgutil
import sys
from pathlib import Path

import function

accelerator, torch_source = sys.argv[1], sys.argv[2]
installed = Path(importlib.metadata.distribution("yolo-cloud-run").locate_file("function/__init__.py"))
if Path(function.__file__).resolve() != installed.resolve():
    sys.exit(f"function was imported from {function.__file__}, not from the installed package ({installed})")
modules = [info.name for info in pkgutil.walk_packages(function.__path__, "function.")]
for name in modules:
    if name.endswith(".__main__"):  # importing it would start the server: finding it is enough
        assert importlib.util.find_spec(name), name
    else:
        importlib.import_module(name)
root = importlib.resources.files("function")
for data in ("static/index.html", "static/predict.js", "static/examples/bus.jpg", "fonts/Arimo.ttf"):
    if not root.joinpath(data).is_file():
        sys.exit(f"package data {data} is missing")

import torch  # noqa: E402  (after the package: its import order is the server's)

cuda = torch.version.cuda
wanted = {"none": None, "nvidia-l4": "12.", "nvidia-rtx-pro-6000": "13."}[accelerator]
if accelerator == "none" and torch_source == "lock":
    wanted = "13."  # PyPI's torch, chosen where PyTorch's CPU index cannot be reached: say so, do not pretend
if (cuda is None) if wanted is None else not (cuda or "").startswith(wanted):
    sys.exit(f"torch {torch.__version__} (CUDA {cuda}) does not fit ACCELERATOR={accelerator}")
print(f"ok: {len(modules) + 1} modules of function, torch {torch.__version__} (CUDA {cuda}) for ACCELERATOR={accelerator}")
