"""`python -m function batch …` and `python -m function batch status --output …`: the arguments, checked before
anything is loaded, with the same parameters, ranges and errors as `POST /predict` (dialects/params.py)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from ..core.tracking import TRACKERS
from ..dialects.params import (NUMBERS, SLICE_CHOICES, SLICE_FIELDS, SLICE_FULL_DESCRIPTION, SLICE_NUMBERS,
                              parse_number, parse_params, parse_slicing, parse_tracking)
from ..errors import BadParameter, ConfigError, WeightsError
from ..logs import log, setup_logging
from ..settings import load_settings, load_task_share
from .plan import PLAN, Plan
from .shares import done_chunks

DEFAULT_CHUNK_SIZE = 100
DEFAULT_MAX_FAILURE_RATE = 0.1
# /predict's model fields; the option of each is its name with '-' for '_' (--max-det).
MODEL_FIELDS = ("conf", "iou", "imgsz", "max_det", "decimals", "classes", "normalize")

EXIT_BAD_ARGUMENTS = 2
EXIT_WEIGHTS = 4


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m function batch",
        description="Run the model (MODEL, as for the server) over every object under --input and write JSONL "
                    "results under --output, exactly once; inside a Cloud Run Job each task takes its share "
                    "(CLOUD_RUN_TASK_INDEX/COUNT). `python -m function batch status --output …` shows progress.")
    p.add_argument("--input", required=True, help="gs://BUCKET/PREFIX or a local folder")
    p.add_argument("--output", required=True,
                   help="gs://BUCKET/PREFIX or a local folder: one run's plan, results, errors")
    p.add_argument("--glob", help="only names matching this pattern, e.g. '*.jpg' (fnmatch, on the name under --input)")
    p.add_argument("--chunk-size", default=str(DEFAULT_CHUNK_SIZE),
                   help=f"items per chunk (default {DEFAULT_CHUNK_SIZE})")
    p.add_argument("--max-failure-rate", default=str(DEFAULT_MAX_FAILURE_RATE),
                   help="fail the task when more of its items than this fraction are errors "
                        f"(default {DEFAULT_MAX_FAILURE_RATE})")
    for name in ("conf", "iou", "imgsz", "max_det", "decimals", "vid_stride"):
        number = NUMBERS[name]
        meaning = number.description.split(" (")[0]
        p.add_argument(f"--{name.replace('_', '-')}", dest=name,
                       help=f"{meaning} ({number.low:g}-{number.high:g}, default {number.default})")
    p.add_argument("--classes", help="comma-separated class names or ids to keep")
    p.add_argument("--normalize", help="true: box coordinates as fractions of the image")
    p.add_argument("--track", action="store_true",
                   help="follow each video's objects from frame to frame: each result line carries track_id "
                        "(images are answered untracked); --conf defaults to 0.1 as for model.track")
    p.add_argument("--tracker", help=f"with --track: {' or '.join(TRACKERS)} (default {TRACKERS[0]})")
    p.add_argument("--slice-size", dest="slice_size", help="sliced inference: the tiles' side in pixels (64 to 4 x "
                                                           "imgsz; absent: no slicing); images only")
    for name in SLICE_FIELDS[1:]:  # slice_size above; each of the others as /predict describes it
        flag = f"--{name.replace('_', '-')}"
        number, choice = SLICE_NUMBERS.get(name), SLICE_CHOICES.get(name)
        if number:
            p.add_argument(flag, dest=name, help=f"{number.description} ({number.low:g}-{number.high:g}, default "
                                                 f"{number.default:g})")
        elif choice:
            p.add_argument(flag, dest=name, help=f"{choice[2]} (default {choice[1]})")
        else:
            p.add_argument(flag, dest=name, help=f"{SLICE_FULL_DESCRIPTION} (true or false, default true)")
    return p


def make_job(args: argparse.Namespace):
    from .runner import Job

    given = [(name, getattr(args, name)) for name in MODEL_FIELDS if getattr(args, name) is not None]
    params = parse_params(given)
    tracking = [("track", "true")] * args.track + ([("tracker", args.tracker)] if args.tracker else [])
    track, params = parse_tracking(given, tracking, params=params)
    slicing = parse_slicing([(name, getattr(args, name)) for name in SLICE_FIELDS if getattr(args, name) is not None],
                            imgsz=params.imgsz)
    vid_stride = NUMBERS["vid_stride"].parse("vid_stride", args.vid_stride) if args.vid_stride else 1
    chunk_size = parse_number("chunk-size", args.chunk_size, int, 1, 100_000)
    max_failure_rate = parse_number("max-failure-rate", args.max_failure_rate, float, 0.0, 1.0)
    for flag in ("input", "output"):
        uri = getattr(args, flag)
        if uri.startswith("gs://") and not uri[5:].split("/", 1)[0]:
            raise BadParameter(f"--{flag} {uri} names no bucket: gs://BUCKET/PREFIX")
    if _inside(args.output, args.input):
        raise BadParameter(f"--output {args.output} is inside --input {args.input}: the results would become input")
    return Job(args.input, args.output, args.glob, chunk_size, params, vid_stride, max_failure_rate, track, slicing)


def _inside(inner: str, outer: str) -> bool:
    if inner.startswith("gs://") != outer.startswith("gs://"):
        return False
    if outer.startswith("gs://"):
        return (inner.rstrip("/") + "/").startswith(outer.rstrip("/") + "/")
    from pathlib import Path

    inner_path, outer_path = Path(inner).expanduser().resolve(), Path(outer).expanduser().resolve()
    return inner_path == outer_path or outer_path in inner_path.parents


def main(argv: list[str]) -> int:
    if argv[:1] == ["status"]:
        return status(argv[1:])
    args = parser().parse_args(argv)
    try:
        job = make_job(args)
        settings, task = load_settings(), load_task_share()
    except (BadParameter, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_ARGUMENTS
    setup_logging(settings.log_level)
    from .runner import Runner

    runner = Runner(job, settings, task, progress_bar=sys.stderr.isatty())
    try:
        params = runner.load()
        return asyncio.run(runner.run(params))
    except BadParameter as exc:
        log.error(f"refused: {exc}")
        return EXIT_BAD_ARGUMENTS
    except WeightsError as exc:
        log.critical(str(exc))
        return EXIT_WEIGHTS
    except Exception as exc:  # infrastructure (storage, network): the task fails and Cloud Run retries it
        log.exception(f"batch task failed: {type(exc).__name__}: {exc}")
        return 1


def status(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m function batch status",
                                description="How far the run in --output is: chunks and items done of the total.")
    p.add_argument("--output", required=True)
    args = p.parse_args(argv)
    from .runner import SUMMARY
    from .writer import open_output

    output = open_output(args.output)
    data = output.read(PLAN)
    if data is None:
        print(f"error: no run in {output.uri} (no {PLAN})", file=sys.stderr)
        return EXIT_BAD_ARGUMENTS
    plan = Plan.from_json(data)
    done = done_chunks(output)
    items_done = sum(len(plan.chunk(chunk)) for chunk in done)
    report = {"run": plan.run, "done": len(done), "total": plan.chunks, "items_done": items_done,
              "items_total": len(plan.items), "errors": sum(int(c.get("errors", 0)) for c in done.values()),
              "complete": len(done) == plan.chunks}
    summary = output.read(SUMMARY)
    if summary is not None:
        report["summary"] = json.loads(summary)
    print(f"{len(done)}/{plan.chunks} chunks, {items_done}/{len(plan.items)} items, {report['errors']} errors"
          f"{' (complete)' if report['complete'] else ''}", file=sys.stderr)
    print(json.dumps(report))
    return 0
