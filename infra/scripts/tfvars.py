#!/usr/bin/env python3
"""Edit a deployment's Terraform variable file (deploy.tfvars.json) for the deploy/start/stop scripts.

The file lives beside the Terraform state in the state bucket, so any machine can start or stop
a region. Only the standard library is used: the scripts run on a laptop with gcloud and
terraform, not in the project's virtualenv.

    tfvars.py merge FILE JSON            set the keys of the JSON object, keep every other key
    tfvars.py canary FILE PERCENT JSON   like merge, keeping the deployed release as canary.stable
    tfvars.py promote FILE               end the canary: the new release takes all traffic
    tfvars.py rollback FILE              end the canary: the stable release is the release again
    tfvars.py stop FILE REGION...        add regions to stopped_regions
    tfvars.py start FILE REGION...       remove regions from stopped_regions
    tfvars.py job FILE REGION JSON       set the batch job of REGION (batch_jobs[REGION]), keep the others
    tfvars.py get FILE KEY               print a value (lists and map keys one per line);
                                         KEY "deployed" prints "yes" when an image is deployed

Files written by earlier versions are read in today's shape: regions as a list of GPU regions (all
L4), one `image` or images keyed gpu/cpu (the L4's image is images["nvidia-l4"] now), instance
settings at the top level, and no http2 (their images answer HTTP/1.1 only, so a deployed one keeps
http2 = false until the next deploy builds new images).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


class UsageError(Exception):
    pass


# What a release is: the variables a canary keeps for the stable revision (infra/variables.tf canary.stable).
RELEASE_KEYS = ("images", "weights_bucket", "model_object", "model_path_in_image", "model_id", "models", "http2")
CANARY_IN_PROGRESS = "a canary is in progress: run make promote (all traffic to the new release) or make rollback first"


def upgrade_images(images: dict) -> dict:
    """images keyed gpu/cpu (the L4 was the only GPU) -> keyed by flavour."""
    images = dict(images or {})
    if "gpu" in images:
        gpu = images.pop("gpu")
        images.setdefault("nvidia-l4", gpu)
    return images


def upgrade(data: dict) -> dict:
    """Today's shape of a file an earlier version wrote."""
    data = dict(data)
    if isinstance(data.get("regions"), list):  # every region was an L4 region
        data["regions"] = {r: {"accelerator": "nvidia-l4"} for r in data["regions"]}
    if "image" in data:
        image = data.pop("image")
        data["images"] = {"nvidia-l4": image, "cpu": ""} if image else {}
    if "images" in data:
        data["images"] = upgrade_images(data["images"])
    moved = {k: data.pop(k) for k in ("min_instances", "max_instances", "max_concurrency") if k in data}
    if moved:
        data["gpu_defaults"] = {**moved, **data.get("gpu_defaults", {})}
    if data.get("canary"):
        stable = dict(data["canary"].get("stable") or {})
        stable["images"] = upgrade_images(stable.get("images"))
        data["canary"] = {**data["canary"], "stable": stable}
    if "http2" not in data and deployed(data):
        # Deployed before the container port could be h2c: those images speak HTTP/1.1 only, so a start, stop,
        # promote or rollback must keep the port http1; the next deploy builds new images and sets http2 itself.
        data["http2"] = False
        if data.get("canary"):
            data["canary"]["stable"].setdefault("http2", False)
    return data


def release(data: dict) -> dict:
    """What a revision serves: the images (the flavours that have one), the weights, the protocol."""
    defaults = {"images": {}, "http2": True}
    found = {k: data.get(k, defaults.get(k, "")) for k in RELEASE_KEYS}
    found["images"] = {flavour: image for flavour, image in (found["images"] or {}).items() if image}
    if not found["models"]:  # one model: the release is what it was before MODELS existed (its revision's name too)
        del found["models"]
    return found


def deployed(data: dict) -> bool:
    return any((data.get("images") or {}).values())


def load(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} must hold a JSON object")
    return upgrade(data)


def save(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def merge(data: dict, update: dict) -> dict:
    if data.get("canary") and "canary" not in update:
        raise UsageError(CANARY_IN_PROGRESS)
    merged = dict(data)
    merged.update(update)
    regions = merged.get("regions", {})
    # A region dropped from the deployment cannot stay stopped.
    merged["stopped_regions"] = [r for r in merged.get("stopped_regions", []) if r in regions]
    return merged


def canary(data: dict, percent: int, update: dict) -> dict:
    if data.get("canary"):
        raise UsageError(CANARY_IN_PROGRESS)
    if not deployed(data):
        raise UsageError("nothing is deployed yet, so there is no release to keep: deploy once without a canary")
    changed = sorted(k for k in update if k not in RELEASE_KEYS and k in data and data[k] != update[k])
    if changed:
        raise UsageError(f"a canary changes only the model or the code; {', '.join(changed)} differ from the deployment: deploy those without a canary first")
    if release(data) == release({**data, **update}):
        raise UsageError("the new release is the deployed one (same images and weights): nothing to canary")
    if not 1 <= percent <= 99:
        raise UsageError("the canary percentage must be from 1 to 99")
    return {**merge(data, {**update, "canary": None}), "canary": {"percent": percent, "stable": release(data)}}


def promote(data: dict) -> dict:
    if not data.get("canary"):
        raise UsageError("no canary in progress: nothing to promote")
    return {k: v for k, v in data.items() if k != "canary"}


def rollback(data: dict) -> dict:
    if not data.get("canary"):
        raise UsageError("no canary in progress: to go back to an earlier model, deploy it again (the same weights and code give the same revision)")
    stable = data["canary"]["stable"]
    return {**{k: v for k, v in data.items() if k != "canary"}, **stable}


def set_stopped(data: dict, regions: list[str], stopped: bool) -> dict:
    if not stopped and data.get("canary"):
        raise UsageError(f"{CANARY_IN_PROGRESS} (a started region would need the stable revision, which its deleted service no longer has)")
    known = list(data.get("regions", {}))
    unknown = [r for r in regions if r not in known]
    if unknown:
        raise UsageError(f"{', '.join(unknown)} not deployed (deployed regions: {', '.join(known) or 'none'})")
    current = [r for r in data.get("stopped_regions", []) if r in known]
    if stopped:
        current += [r for r in regions if r not in current]
    else:
        current = [r for r in current if r not in regions]
    return {**data, "stopped_regions": [r for r in known if r in current]}


def set_job(data: dict, region: str, job: dict) -> dict:
    """A region's batch job (infra/variables.tf batch_jobs); it changes no release, so a canary may be in progress."""
    if not deployed(data):
        raise UsageError("nothing is deployed yet: the batch job runs the endpoint's image, so run make deploy first")
    return {**data, "batch_jobs": {**data.get("batch_jobs", {}), region: job}}


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in {"merge", "canary", "promote", "rollback", "stop", "start", "job", "get"}:
        raise UsageError("usage: tfvars.py merge|canary|promote|rollback|stop|start|job|get FILE ...")
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
    elif command == "canary":
        if len(rest) != 2 or not rest[0].isdigit():
            raise UsageError("usage: tfvars.py canary FILE PERCENT JSON")
        save(path, canary(load(path), int(rest[0]), json.loads(rest[1])))
    elif command in {"promote", "rollback"}:
        if not path.exists():
            raise UsageError(f"{path} does not exist: nothing is deployed")
        save(path, promote(load(path)) if command == "promote" else rollback(load(path)))
    elif command == "job":
        if len(rest) != 2:
            raise UsageError("usage: tfvars.py job FILE REGION JSON")
        if not path.exists():
            raise UsageError(f"{path} does not exist: nothing is deployed")
        save(path, set_job(load(path), rest[0], json.loads(rest[1])))
    elif command in {"stop", "start"}:
        if not rest:
            raise UsageError(f"usage: tfvars.py {command} FILE REGION...")
        if not path.exists():
            raise UsageError(f"{path} does not exist: nothing is deployed")
        save(path, set_stopped(load(path), rest, stopped=command == "stop"))
    else:
        if len(rest) != 1:
            raise UsageError("usage: tfvars.py get FILE KEY")
        data = load(path)
        value = ("yes" if deployed(data) else None) if rest[0] == "deployed" else data.get(rest[0])
        if isinstance(value, dict) and rest[0] == "regions":
            value = list(value)
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
