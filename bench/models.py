"""`make bench` (models): what serving several models from one endpoint costs (docs/models.md).

One endpoint (`python -m function`), the default model yolo11n-pose.pt, and MODELS = three models of other tasks or
weights (the trained fall-detection detector, yolo11n-pose again under its own id, an untrained yolov8n-seg):

* the cost of a switch: with MAX_LOADED_MODELS=1 every request for another model evicts the loaded one and loads its
  own; per round, each model in turn gets a request that switches and then one that does not. Reported: the load
  seconds the server measured (`GET /models`), and the switching request's latency over the warm one's, each the
  median over the rounds (interleaved, so the machine's noise hits all models alike) with its spread;
* the memory per loaded model: with MAX_LOADED_MODELS=3, the worker's RSS after loading each model in turn, against
  its RSS with the default model only, and the footprint the server measured at each load.

Figures are from this one run on this machine; other processes on it (tests, builds) add noise to every figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from bench import default_model, endpoint  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))
from conftest import _build_untrained, _site_file  # noqa: E402

MB = 2**20


def models_map(built: Path) -> dict[str, str]:
    return {"fall": str(_site_file("fall_detection", "models/best.pt")), "pose": default_model(),
            "segment": str(_build_untrained("yolov8n-seg.yaml", built / "segment.pt"))}


def worker_rss(pid: int) -> int:
    """The RSS of the process that holds the models (gunicorn's worker, the largest of the tree)."""
    processes = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    return max(p.memory_info().rss for p in processes)


def listing(server) -> dict:
    return {m["id"]: m for m in requests.get(server.url + "/models", timeout=30).json()["models"]}


def post(server, model_id: str, data: bytes) -> float:
    started = time.perf_counter()
    response = server.session.post(f"{server.url}/api/models/{model_id}/predict", files={"file": ("bus.jpg", data)},
                                   timeout=300)
    assert response.status_code == 200, response.text
    return time.perf_counter() - started


def spread(values: list[float], digits: int = 3) -> dict:
    return {"median": round(statistics.median(values), digits), "min": round(min(values), digits),
            "max": round(max(values), digits)}


def measure_switches(models: dict[str, str], data: bytes, log_dir: Path, rounds: int) -> dict:
    server = endpoint("switch", default_model(), log_dir, MODELS=",".join(f"{k}={v}" for k, v in models.items()),
                      MAX_LOADED_MODELS="1")
    try:
        server.wait_ready()
        for model_id in models:  # first loads (cold file caches, first imports) are not a switch's cost
            post(server, model_id, data)
        load_s = {m: [] for m in models}
        switch_s = {m: [] for m in models}
        warm_s = {m: [] for m in models}
        for _ in range(rounds):
            for model_id in models:
                switch_s[model_id].append(post(server, model_id, data))
                load_s[model_id].append(listing(server)[model_id]["load_seconds"])
                warm_s[model_id].append(post(server, model_id, data))
        return {m: {"load_s": spread(load_s[m]), "switch_request_s": spread(switch_s[m]),
                    "warm_request_s": spread(warm_s[m]),
                    "switch_over_warm": spread([s / w for s, w in zip(switch_s[m], warm_s[m])], 1)} for m in models}
    finally:
        server.stop()


def measure_memory(models: dict[str, str], data: bytes, log_dir: Path) -> dict:
    server = endpoint("memory", default_model(), log_dir, MODELS=",".join(f"{k}={v}" for k, v in models.items()),
                      MAX_LOADED_MODELS=str(len(models)))
    try:
        server.wait_ready()
        server.post(data)
        base = worker_rss(server.proc.pid)
        rows, previous = {}, base
        for model_id in models:
            post(server, model_id, data)
            now = worker_rss(server.proc.pid)
            rows[model_id] = {"rss_added_mb": round((now - previous) / MB, 1),
                              "measured_by_server_mb": listing(server)[model_id]["memory_mb"]}
            previous = now
        return {"default_only_rss_mb": round(base / MB, 1), "all_loaded_rss_mb": round(previous / MB, 1),
                "per_model": rows,
                "mean_per_model_mb": round((previous - base) / MB / len(models), 1)}
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved switching rounds")
    parser.add_argument("--json", default=str(ROOT / "artifacts" / "bench-models.json"))
    args = parser.parse_args()
    from ultralytics.utils import ASSETS

    data = (ASSETS / "bus.jpg").read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        models = models_map(Path(tmp))
        report = {"models": list(models), "rounds": args.rounds, "cpu_count": psutil.cpu_count(),
                  "switch": measure_switches(models, data, Path(tmp), args.rounds),
                  "memory": measure_memory(models, data, Path(tmp))}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2))
    print(table(report))


def table(report: dict) -> str:
    lines = [f"several models: {', '.join(report['models'])} beside yolo11n-pose (default), {report['cpu_count']} CPUs, "
             f"{report['rounds']} interleaved rounds, medians [min–max]", "",
             "| model | load s (a switch) | switching request s | warm request s | switch ÷ warm | RSS added MB | "
             "measured MB |", "|---|---|---|---|---|---|---|"]
    for model_id, row in report["switch"].items():
        memory = report["memory"]["per_model"][model_id]
        cells = [f"{row[k]['median']} [{row[k]['min']}–{row[k]['max']}]"
                 for k in ("load_s", "switch_request_s", "warm_request_s", "switch_over_warm")]
        lines.append(f"| {model_id} | {' | '.join(cells)} | {memory['rss_added_mb']} | {memory['measured_by_server_mb']} |")
    memory = report["memory"]
    lines += ["", f"worker RSS: {memory['default_only_rss_mb']} MB with the default model only, "
              f"{memory['all_loaded_rss_mb']} MB with all {len(report['models'])} loaded: "
              f"{memory['mean_per_model_mb']} MB per loaded model"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
