#!/usr/bin/env python3
"""Refuse weights the endpoint could not serve, before deploy.sh builds or applies anything.

    check_model.py PATH

Loads PATH exactly as the server does (Ultralytics' `YOLO(path)`, function/models/loaded.py), on the CPU and offline
(deploy.sh sets YOLO_OFFLINE=1, YOLO_AUTOINSTALL=false and hides every GPU), and asks for what serving needs: a task
the server serves and class names. Prints one line and exits 0 when they are there ("detect, 2 classes: Normal,
Fall"); otherwise prints the reason on one line and exits 1. Run with the project's virtualenv, which has Ultralytics;
whatever Ultralytics or PyTorch print while loading is kept off the terminal.
"""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

from function.models.params import TASKS  # the project's venv has the package (make install)


def first_line(text: str, limit: int = 200) -> str:
    line = (text.strip().splitlines() or [""])[0].strip()
    return line if len(line) <= limit else line[: limit - 1] + "…"


def check(path: Path) -> str:
    """A one-line description of the model; raises ValueError with the reason it cannot be served."""
    if not path.is_file():
        raise ValueError("no such file")
    if path.suffix != ".pt":
        raise ValueError(f"a {path.suffix or 'suffix-less'} file is not PyTorch weights (.pt)")
    noise = io.StringIO()
    with contextlib.redirect_stdout(noise), contextlib.redirect_stderr(noise):
        try:
            from ultralytics import YOLO
        except ImportError as exc:
            raise RuntimeError(f"Ultralytics is not installed in {sys.executable} ({exc})") from None
        try:
            model = YOLO(str(path))
        except Exception as exc:  # noqa: BLE001 - any failure to load is the answer
            raise ValueError(f"Ultralytics cannot load it ({type(exc).__name__}: {first_line(str(exc))})") from None
        task = getattr(model, "task", None)
        try:
            names = model.names
        except Exception as exc:  # noqa: BLE001
            raise ValueError(f"it has no class names ({type(exc).__name__}: {first_line(str(exc))})") from None
    if task not in TASKS:
        raise ValueError(f"its task is {task!r}; the endpoint serves {', '.join(TASKS)}")
    if not names:
        raise ValueError("it has no class names")
    labels = list(names.values()) if isinstance(names, dict) else list(names)
    shown = ", ".join(str(n) for n in labels[:5]) + (", …" if len(labels) > 5 else "")
    return f"{task}, {len(labels)} class{'es' if len(labels) != 1 else ''}: {shown}"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: check_model.py PATH", file=sys.stderr)
        return 2
    try:
        print(check(Path(argv[0])))
    except RuntimeError as exc:
        print(str(exc))
        return 3
    except ValueError as exc:
        print(str(exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
