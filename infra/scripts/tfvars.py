#!/usr/bin/env python3
"""Edit a deployment's Terraform variable file (deploy.tfvars.json) for the deploy/start/stop scripts.

The file lives beside the Terraform state in the state bucket, so any machine can start or stop
a region. Only the standard library is used: the scripts run on a laptop with gcloud and
terraform, not in the project's virtualenv.

    tfvars.py merge FILE JSON        set the keys of the JSON object, keep every other key
    tfvars.py stop FILE REGION...    add regions to stopped_regions
    tfvars.py start FILE REGION...   remove regions from stopped_regions
    tfvars.py get FILE KEY           print a value (lists one item per line)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


class UsageError(Exception):
    pass


def load(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} must hold a JSON object")
    return data


def save(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def merge(data: dict, update: dict) -> dict:
    merged = dict(data)
    merged.update(update)
    regions = merged.get("regions", [])
    # A region dropped from the deployment cannot stay stopped.
    merged["stopped_regions"] = [r for r in merged.get("stopped_regions", []) if r in regions]
    return merged


def set_stopped(data: dict, regions: list[str], stopped: bool) -> dict:
    known = data.get("regions", [])
    unknown = [r for r in regions if r not in known]
    if unknown:
        raise UsageError(f"{', '.join(unknown)} not deployed (deployed regions: {', '.join(known) or 'none'})")
    current = [r for r in data.get("stopped_regions", []) if r in known]
    if stopped:
        current += [r for r in regions if r not in current]
    else:
        current = [r for r in current if r not in regions]
    return {**data, "stopped_regions": [r for r in known if r in current]}


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in {"merge", "stop", "start", "get"}:
        raise UsageError("usage: tfvars.py merge|stop|start|get FILE ...")
    command, path = argv[0], Path(argv[1])
    rest = argv[2:]
    if command == "merge":
        if len(rest) != 1:
            raise UsageError("usage: tfvars.py merge FILE JSON")
        try:
            update = json.loads(rest[0])
        except json.JSONDecodeError as exc:
            raise UsageError(f"not a JSON object: {exc}") from None
        if not isinstance(update, dict):
            raise UsageError("merge takes a JSON object")
        save(path, merge(load(path), update))
    elif command in {"stop", "start"}:
        if not rest:
            raise UsageError(f"usage: tfvars.py {command} FILE REGION...")
        if not path.exists():
            raise UsageError(f"{path} does not exist: nothing is deployed")
        save(path, set_stopped(load(path), rest, stopped=command == "stop"))
    else:
        if len(rest) != 1:
            raise UsageError("usage: tfvars.py get FILE KEY")
        value = load(path).get(rest[0])
        if isinstance(value, list):
            print("\n".join(str(v) for v in value))
        elif value is not None:
            print(value if isinstance(value, str) else json.dumps(value))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
