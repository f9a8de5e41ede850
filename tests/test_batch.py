"""`python -m function batch`: real task processes (as a Cloud Run Job runs them, CLOUD_RUN_TASK_INDEX/COUNT set)
over a real GCS emulator (fake-gcs-server) and over local folders; one task SIGKILLed in the middle of a chunk, then
the execution rerun: every input exactly once, nothing written twice, every line equal to `POST /predict`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import requests
from conftest import ROOT, json_lines, wait_until

pytestmark = pytest.mark.integration

IN_BUCKET, OUT_BUCKET = "batch-photos", "batch-results"
IMAGES = 200
VIDEO_FRAMES = 6
CHUNK = 10
PARAMS = {"imgsz": "96", "conf": "0.2"}  # small images, small imgsz: 200 of them take seconds on two cores
ITEMS = IMAGES + 3  # the images, one corrupt JPEG, one text file, one video
EXPECTED_ERRORS = {"corrupt.jpg": ("decode", 400), "notes.txt": ("decode", 415)}


@pytest.fixture(scope="module")
def photos(tmp_path_factory, bus_jpg, zidane_jpg) -> Path:
    """200 small photos cut from Ultralytics' two samples (four sizes, four formats), a corrupt JPEG, a text file and
    a short video written with OpenCV."""
    import cv2

    folder = tmp_path_factory.mktemp("photos")
    samples = [cv2.imread(str(bus_jpg)), cv2.imread(str(zidane_jpg))]
    sizes = [(64, 48), (64, 64), (60, 80), (96, 64)]
    formats = ["jpg", "png", "webp", "bmp"]
    for i in range(IMAGES):
        sample = samples[i % 2]
        height, width = sample.shape[:2]
        y, x = (i * 37) % (height // 3), (i * 53) % (width // 3)
        crop = sample[y:y + 2 * height // 3, x:x + 2 * width // 3]
        sub = folder / ("a" if i < IMAGES // 2 else "b")
        sub.mkdir(exist_ok=True)
        cv2.imwrite(str(sub / f"photo-{i:03d}.{formats[i % 4]}"), cv2.resize(crop, sizes[(i // 4) % 4]))
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"not really a jpeg" * 4)
    (folder / "notes.txt").write_text("not an image")
    writer = cv2.VideoWriter(str(folder / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 5, (64, 48))
    for i in range(VIDEO_FRAMES):
        writer.write(cv2.resize(samples[0][i * 30:i * 30 + 600], (64, 48)))
    writer.release()
    assert len(files(folder)) == ITEMS
    return folder


def files(folder: Path) -> list[str]:
    """The files a listing shows (not the hidden side files that hold a local chunk's counts)."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


@pytest.fixture(scope="module")
def gcs(gcs, photos):
    """The session's emulator with this module's buckets: the photos in IN_BUCKET, OUT_BUCKET empty (the batch
    processes reach it: STORAGE_EMULATOR_HOST)."""
    bucket = gcs.bucket(IN_BUCKET)
    gcs.bucket(OUT_BUCKET)
    for name in files(photos):
        bucket.blob(f"shoot/{name}").upload_from_filename(str(photos / name))
    bucket.blob("elsewhere/not-this.jpg").upload_from_filename(str(photos / files(photos)[0]))
    return gcs


def batch_env(weights, tmp_path_factory, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUD_RUN_")}
    # ENGINE=pytorch as the test servers run it (conftest): lines are compared with /predict bit for bit.
    env.update({"MODEL": str(weights["detect"]), "YOLO_CONFIG_DIR": str(tmp_path_factory.mktemp("yolo-config")),
                "ENGINE": "pytorch", **extra})
    return env


def start(args: list[str], env: dict, task: tuple[int, int] | None, log: Path | None = None) -> subprocess.Popen:
    """One task process; its JSON log goes to `log`, or to a pipe the caller reads."""
    if task is not None:
        env = {**env, "CLOUD_RUN_TASK_INDEX": str(task[0]), "CLOUD_RUN_TASK_COUNT": str(task[1])}
    out = open(log, "wb") if log else subprocess.PIPE
    return subprocess.Popen([sys.executable, "-m", "function", "batch", *args], cwd=ROOT, env=env, stdout=out,
                            stderr=subprocess.STDOUT)


def params_args(params: dict) -> list[str]:
    return [arg for name, value in params.items() for arg in (f"--{name.replace('_', '-')}", value)]


def run_execution(args, env, count, logs: Path, kill: int | None = None) -> dict[int, list[dict]]:
    """One execution: `count` task processes side by side; with `kill`, that task is SIGKILLed as soon as it has
    written its first chunk (it is then reading or inferring its next one). Returns each task's log."""
    procs = {}
    for index in range(count):
        procs[index] = start(args, env, (index, count), None if index == kill else logs / f"task-{index}.log")
    if kill is not None:
        killed, seen = procs[kill], []
        for raw in killed.stdout:
            seen.append(raw.decode(errors="replace"))
            if '"chunk"' in raw.decode(errors="replace"):
                killed.send_signal(signal.SIGKILL)
                break
        killed.wait(60)
        seen.append(killed.stdout.read().decode(errors="replace"))
        (logs / f"task-{kill}.log").write_text("".join(seen))
        assert killed.returncode == -signal.SIGKILL
    for index, proc in procs.items():
        proc.wait(300)
        if index != kill:
            assert proc.returncode == 0, (logs / f"task-{index}.log").read_text()[-3000:]
    return {index: json_lines((logs / f"task-{index}.log").read_text()) for index in procs}


def todo(log: list[dict]) -> int:
    return next(entry["todo"] for entry in log if "share" in entry)


def chunks_written(log: list[dict]) -> list[int]:
    return [entry["chunk"] for entry in log if "chunk" in entry and entry.get("written")]


def gcs_objects(gcs, prefix: str) -> dict[str, int]:
    return {blob.name[len(prefix):]: blob.generation for blob in gcs.client.list_blobs(OUT_BUCKET, prefix=prefix)}


def read_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def outputs_of(read, names) -> tuple[list[dict], list[dict]]:
    results = [line for name in names if name.startswith("results/") for line in read_lines(read(name))]
    errors = [line for name in names if name.startswith("errors/") for line in read_lines(read(name))]
    return results, errors


def check_exactly_once(plan: dict, results: list[dict], errors: list[dict], name_of) -> None:
    """Every planned item once: an image one result line, the video one per frame, a failure one error line."""
    planned = [item[1] for item in plan["items"]]
    assert len(planned) == ITEMS
    by_source = Counter(line["source"]["uri"] for line in results)
    failed = Counter(line["source"]["uri"] for line in errors)
    assert set(by_source) | set(failed) == set(planned) and not set(by_source) & set(failed)
    assert all(n == 1 for n in failed.values())
    video = [uri for uri in planned if uri.endswith("clip.mp4")][0]
    assert by_source[video] == VIDEO_FRAMES
    assert [line["frame"] for line in results if line["source"]["uri"] == video] == list(range(VIDEO_FRAMES))
    assert all(n == 1 for uri, n in by_source.items() if uri != video)
    assert len(results) == IMAGES + VIDEO_FRAMES
    assert {name_of(line["source"]["uri"]): (line["stage"], line["error"]["code"]) for line in errors} == EXPECTED_ERRORS
    generations = {item[1]: item[2] for item in plan["items"]}
    assert all(line["source"]["generation"] == generations[line["source"]["uri"]] for line in results + errors)


@pytest.fixture(scope="module")
def gcs_run(gcs, weights, tmp_path_factory):
    """Three tasks, task 1 killed mid-chunk; the execution rerun; then the finished run rerun by one process."""
    logs = tmp_path_factory.mktemp("batch-logs")
    env = batch_env(weights, tmp_path_factory)
    args = ["--input", f"gs://{IN_BUCKET}/shoot", "--output", f"gs://{OUT_BUCKET}/run1", "--chunk-size", str(CHUNK),
            *params_args(PARAMS)]
    (logs / "first").mkdir()
    first = run_execution(args, env, 3, logs / "first", kill=1)
    after_kill = gcs_objects(gcs, "run1/")
    (logs / "rerun").mkdir()
    rerun = run_execution(args, env, 3, logs / "rerun")
    after_rerun = gcs_objects(gcs, "run1/")
    (logs / "again").mkdir()
    again = run_execution(args, env, 1, logs / "again")
    return {"args": args, "env": env, "first": first, "rerun": rerun, "again": again, "after_kill": after_kill,
            "after_rerun": after_rerun, "after_again": gcs_objects(gcs, "run1/")}


def test_a_killed_task_is_finished_by_the_rerun_and_every_input_is_there_exactly_once(gcs, gcs_run):
    chunks = -(-ITEMS // CHUNK)
    share = len(range(1, chunks, 3))
    first, rerun = gcs_run["first"], gcs_run["rerun"]
    # The killed task had written some of its chunks, not all; the others did all of theirs.
    killed_wrote = chunks_written(first[1])
    assert 1 <= len(killed_wrote) < share
    assert all(todo(first[i]) == len(range(i, chunks, 3)) for i in (0, 2))
    # The rerun: tasks 0 and 2 find nothing to do; task 1 does exactly what the kill left.
    assert todo(rerun[0]) == todo(rerun[2]) == 0
    assert sorted(chunks_written(rerun[1])) == [c for c in range(1, chunks, 3) if c not in killed_wrote]
    # Nothing written before the rerun was written again, and nothing half-written was left by the kill.
    after_kill, after_rerun = gcs_run["after_kill"], gcs_run["after_rerun"]
    assert all(after_rerun[name] == generation for name, generation in after_kill.items())
    results = [name for name in after_rerun if name.startswith("results/")]
    assert len(results) == chunks
    assert set(after_rerun) - set(results) <= {"plan.json", "summary.json"} | {
        name for name in after_rerun if name.startswith("errors/")}

    bucket = gcs.client.bucket(OUT_BUCKET)
    read = lambda name: bucket.blob(f"run1/{name}").download_as_text()  # noqa: E731
    plan = json.loads(read("plan.json"))
    assert plan["chunks"] == chunks and plan["chunk_size"] == CHUNK
    results, errors = outputs_of(read, sorted(after_rerun))
    check_exactly_once(plan, results, errors, lambda uri: uri.rsplit("/", 1)[-1])
    assert all(uri.startswith(f"gs://{IN_BUCKET}/shoot/") for uri in (item[1] for item in plan["items"]))

    summary = json.loads(read("summary.json"))
    assert (summary["items"], summary["frames"], summary["errors"], summary["chunks"]) == \
        (ITEMS, IMAGES + VIDEO_FRAMES, len(EXPECTED_ERRORS), chunks)
    assert summary["seconds"] > 0 and summary["images_per_second"] > 0


def test_a_finished_run_rerun_does_nothing(gcs_run):
    assert todo(gcs_run["again"][0]) == 0
    assert gcs_run["after_again"] == gcs_run["after_rerun"]


def test_status_says_done_of_total(gcs_run):
    status = subprocess.run([sys.executable, "-m", "function", "batch", "status", "--output", f"gs://{OUT_BUCKET}/run1"],
                            cwd=ROOT, env=gcs_run["env"], capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    chunks = -(-ITEMS // CHUNK)
    assert (report["done"], report["total"], report["items_done"], report["items_total"], report["errors"]) == \
        (chunks, chunks, ITEMS, ITEMS, len(EXPECTED_ERRORS))
    assert report["complete"] and report["summary"]["items"] == ITEMS
    assert f"{chunks}/{chunks} chunks, {ITEMS}/{ITEMS} items" in status.stderr


def without_speed(entry: dict) -> dict:
    return {key: value for key, value in entry.items() if key not in ("speed", "source")}


def test_every_line_equals_predict_on_the_same_file(gcs, gcs_run, detect_server, photos):
    bucket = gcs.client.bucket(OUT_BUCKET)
    lines = [json.loads(line) for name in sorted(gcs_run["after_rerun"]) if name.startswith("results/")
             for line in bucket.blob(f"run1/{name}").download_as_text().splitlines()]
    by_file: dict[str, list[dict]] = {}
    for line in lines:
        by_file.setdefault(line["source"]["uri"].removeprefix(f"gs://{IN_BUCKET}/shoot/"), []).append(line)
    assert len(by_file) == IMAGES + 1
    detected = 0
    for name, entries in by_file.items():
        with open(photos / name, "rb") as file:
            answer = requests.post(detect_server.url + "/predict", files={"file": file}, data=PARAMS, timeout=60)
        assert answer.status_code == 200, answer.text
        assert [without_speed(entry) for entry in entries] == [without_speed(i) for i in answer.json()["images"]], name
        detected += sum(len(entry["results"]) for entry in entries)
    assert detected > 0, "the photos must give detections for the comparison to mean something"


def test_failed_inputs_get_the_error_predict_gives(gcs, gcs_run, detect_server, photos):
    bucket = gcs.client.bucket(OUT_BUCKET)
    errors = [json.loads(line) for name in sorted(gcs_run["after_rerun"]) if name.startswith("errors/")
              for line in bucket.blob(f"run1/{name}").download_as_text().splitlines()]
    for line in errors:
        name = line["source"]["uri"].rsplit("/", 1)[-1]
        with open(photos / name, "rb") as file:
            answer = requests.post(detect_server.url + "/predict", files={"file": file}, data=PARAMS, timeout=60)
        assert line["error"] == answer.json()["error"]


def test_local_folders_the_same_way(photos, gcs_run, gcs, weights, tmp_path_factory, tmp_path):
    """Two tasks over a folder into a folder, one killed mid-chunk, the execution rerun: the same exactly-once, and the
    same answers as the GCS run's."""
    env = batch_env(weights, tmp_path_factory)
    out = tmp_path / "out"
    args = ["--input", str(photos), "--output", str(out), "--chunk-size", str(CHUNK), *params_args(PARAMS)]
    (tmp_path / "first").mkdir()
    first = run_execution(args, env, 2, tmp_path / "first", kill=0)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert not [p for p in before if p.name.endswith(".part")], "the kill left no temporary file behind"
    (tmp_path / "rerun").mkdir()
    rerun = run_execution(args, env, 2, tmp_path / "rerun")
    assert todo(rerun[1]) == 0 and todo(rerun[0]) == len(range(0, -(-ITEMS // CHUNK), 2)) - len(chunks_written(first[0]))
    assert all(p.stat().st_mtime_ns == mtime for p, mtime in before.items())

    names = files(out)
    read = lambda name: (out / name).read_text()  # noqa: E731
    plan = json.loads(read("plan.json"))
    results, errors = outputs_of(read, names)
    check_exactly_once(plan, results, errors, lambda uri: Path(uri).name)
    bucket = gcs.client.bucket(OUT_BUCKET)
    from_gcs = {line["source"]["uri"].removeprefix(f"gs://{IN_BUCKET}/shoot/"): without_speed(line)
                for name in gcs_run["after_rerun"] if name.startswith("results/")
                for line in bucket.blob(f"run1/{name}").download_as_text().splitlines()
                for line in [json.loads(line)]}
    local = {str(Path(line["source"]["uri"]).relative_to(photos)): without_speed(line) for line in results}
    assert local == from_gcs

    again = subprocess.run([sys.executable, "-m", "function", "batch", *args], cwd=ROOT, env=env, capture_output=True,
                           timeout=300)
    assert again.returncode == 0 and todo(json_lines(again.stdout.decode())) == 0


def test_sigterm_stops_at_once_and_leaves_whole_chunks(photos, weights, tmp_path_factory, tmp_path):
    env = batch_env(weights, tmp_path_factory)
    out = tmp_path / "out"
    proc = start(["--input", str(photos), "--output", str(out), "--chunk-size", "5", *params_args(PARAMS)], env, None)
    for raw in proc.stdout:
        if b'"chunk"' in raw:
            proc.send_signal(signal.SIGTERM)
            break
    sent = time.monotonic()
    rest = proc.stdout.read().decode()
    assert proc.wait(30) == 128 + signal.SIGTERM and time.monotonic() - sent < 5
    assert "SIGTERM: stopping" in rest
    written = sorted((out / "results").glob("chunk-*.jsonl"))
    assert 1 <= len(written) < -(-ITEMS // 5)
    for path in written:
        assert path.read_text().endswith("\n") and all(json.loads(line) for line in path.read_text().splitlines())


def run_batch(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "function", "batch", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("field, value", [("conf", "2"), ("imgsz", "20"), ("max_det", "0"), ("iou", "x")])
def test_parameters_are_refused_as_predict_refuses_them(field, value, photos, weights, tmp_path_factory, tmp_path,
                                                        detect_server):
    env = batch_env(weights, tmp_path_factory)
    refused = run_batch(["--input", str(photos), "--output", str(tmp_path / "out"), f"--{field.replace('_', '-')}",
                         value], env)
    answer = requests.post(detect_server.url + "/predict", files={"file": open(photos / files(photos)[0], "rb")},
                           data={field: value}, timeout=60)
    assert answer.status_code == 400
    assert refused.returncode == 2 and refused.stderr.strip() == f"error: {answer.json()['error']['message']}"
    assert not (tmp_path / "out").exists()


def test_unknown_classes_and_another_runs_output_are_refused(photos, weights, tmp_path_factory, tmp_path, detect_server):
    env = batch_env(weights, tmp_path_factory)
    out = tmp_path / "out"
    refused = run_batch(["--input", str(photos), "--output", str(out), "--classes", "unicorn"], env)
    answer = requests.post(detect_server.url + "/predict", files={"file": open(photos / files(photos)[0], "rb")},
                           data={"classes": "unicorn"}, timeout=60)
    assert refused.returncode == 2 and answer.json()["error"]["message"] in refused.stdout

    small = tmp_path / "small"
    small.mkdir()
    (small / "one.jpg").write_bytes((photos / files(photos)[0]).read_bytes())
    assert run_batch(["--input", str(small), "--output", str(out), "--imgsz", "64"], env).returncode == 0
    other = run_batch(["--input", str(small), "--output", str(out), "--imgsz", "96"], env)
    assert other.returncode == 2 and "holds run" in other.stdout and "give another --output" in other.stdout
    inside = run_batch(["--input", str(small), "--output", str(small / "out")], env)
    assert inside.returncode == 2 and "is inside --input" in inside.stderr


def test_too_many_failures_fail_the_task_and_a_retry_fails_the_same(photos, weights, tmp_path_factory, tmp_path):
    env = batch_env(weights, tmp_path_factory)
    folder = tmp_path / "mostly-broken"
    folder.mkdir()
    for name in ("corrupt.jpg", "notes.txt", files(photos)[0]):
        (folder / Path(name).name).write_bytes((photos / name).read_bytes())
    args = ["--input", str(folder), "--output", str(tmp_path / "out"), "--max-failure-rate", "0.5"]
    failed = run_batch(args, env)
    assert failed.returncode == 3 and "2 of this task's 3 items failed" in failed.stdout
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["errors"] == 2
    assert run_batch(args, {**env, "CLOUD_RUN_TASK_ATTEMPT": "1"}).returncode == 3
    assert run_batch([*args[:-1], "0.7"], env).returncode == 0


# -- the parts, without a model ----------------------------------------------------------------------------------


def test_objects_are_created_once_whole_in_a_bucket_and_in_a_folder(gcs, tmp_path):
    from function.batch.writer import GcsOutput, LocalOutput

    for output in (GcsOutput(f"gs://{OUT_BUCKET}/create-once"), LocalOutput(str(tmp_path / "out"))):
        assert output.create("results/chunk-000000.jsonl", b'{"a":1}\n', {"items": 1}) is True
        assert output.create("results/chunk-000000.jsonl", b'{"b":2}\n', {"items": 2}) is False  # 412: keep the first
        assert output.read("results/chunk-000000.jsonl") == b'{"a":1}\n'
        assert output.list("results/") == {"results/chunk-000000.jsonl": {"items": "1"}}
        assert output.read("results/chunk-000001.jsonl") is None
    assert not [p for p in (tmp_path / "out").rglob("*.part")]


def test_each_chunk_belongs_to_one_task_whatever_the_count():
    from function.batch.shares import share
    from function.settings import TaskShare, load_task_share
    from function.errors import ConfigError

    for count in (1, 3, 7, 25):
        shares = [share(21, TaskShare(index, count)) for index in range(count)]
        assert sorted(chunk for s in shares for chunk in s) == list(range(21))
    assert load_task_share({}) == TaskShare(0, 1, 0)
    assert load_task_share({"CLOUD_RUN_TASK_INDEX": "2", "CLOUD_RUN_TASK_COUNT": "3", "CLOUD_RUN_TASK_ATTEMPT": "1"}) \
        == TaskShare(2, 3, 1)
    with pytest.raises(ConfigError, match="CLOUD_RUN_TASK_INDEX=3 must be below CLOUD_RUN_TASK_COUNT=3"):
        load_task_share({"CLOUD_RUN_TASK_INDEX": "3", "CLOUD_RUN_TASK_COUNT": "3"})


def test_when_inference_fails_no_read_or_inference_is_left_behind(tmp_path):
    """The model's side fails (a 503 from the service: the task fails, Cloud Run retries it) while the next chunk is
    read ahead and that read fails too: the task ends with the model's error, and nothing it started is left running
    or failing unseen ("exception was never retrieved" is an ERROR with a trace in the job's log)."""
    import asyncio
    import gc

    from function.batch import plan as plans
    from function.batch.runner import Job, Runner
    from function.errors import ModelNotReady
    from function.models.params import PredictParams
    from function.settings import TaskShare, load_settings

    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("0.jpg", "1.jpg", "2.jpg", "3.jpg"):
        (folder / name).write_bytes(b"not read by a model")
    job = Job(str(folder), str(tmp_path / "out"), None, 2, PredictParams(), 1, 0.5)
    runner = Runner(job, load_settings({"MODEL": "unused.pt"}), TaskShare())
    runner.plan = lambda params: plans.load_or_make(runner.output, runner.source, None, "run", {}, 2)[0]
    real_read, reads = runner.source.read, []

    def read(item):
        if item.name in ("2.jpg", "3.jpg"):  # chunk 1, read ahead while chunk 0 is inferred
            raise ConnectionError("the network went away")  # an infrastructure failure: it fails the task
        return real_read(item)

    def read_ahead(items):
        reads.append(real_read_ahead(items))
        return reads[-1]

    real_read_ahead, runner.source.read, runner._read = runner._read, read, read_ahead

    async def predict(request, started, encode, lease=None):
        await asyncio.wait([reads[-1]])  # chunk 1's read ahead has failed by now
        raise ModelNotReady("the model went away")

    runner.service.predict = predict
    reported = []

    async def main():
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: reported.append(context["message"]))
        return await runner.run(PredictParams())

    raised = None
    try:
        asyncio.run(main())
    except ModelNotReady as exc:
        raised = str(exc)
    runner.read_pool.shutdown()
    assert raised == "the model went away"
    assert len(reads) == 2 and all(read.done() for read in reads)
    reads.clear()
    gc.collect()  # a future whose exception nobody took says so when it is collected
    assert reported == [], reported


def test_the_plan_is_written_once_and_pins_what_was_listed(tmp_path):
    from function.batch.plan import load_or_make, run_id
    from function.batch.reader import LocalInput
    from function.batch.writer import LocalOutput
    from function.errors import BadParameter

    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("b.jpg", "a.jpg", "c.png"):
        (folder / name).write_bytes(name.encode())
    source, output = LocalInput(str(folder)), LocalOutput(str(tmp_path / "out"))
    run = run_id(source.uri, "*.jpg", "sha", {"conf": 0.25})
    plan, made = load_or_make(output, source, "*.jpg", run, {"conf": 0.25}, 1)
    assert made and [item.name for item in plan.items] == ["a.jpg", "b.jpg"] and plan.chunks == 2
    (folder / "0.jpg").write_bytes(b"late")  # listed after the plan: not part of this run
    again, made = load_or_make(output, source, "*.jpg", run, {"conf": 0.25}, 5)
    assert not made and again == plan
    other = run_id(source.uri, "*.jpg", "sha", {"conf": 0.3})
    with pytest.raises(BadParameter, match=f"holds run {run}"):
        load_or_make(output, source, "*.jpg", other, {"conf": 0.3}, 1)
    with pytest.raises(BadParameter, match="holds no object matching --glob"):
        load_or_make(LocalOutput(str(tmp_path / "out2")), source, "*.gif", run, {}, 1)
    (folder / "a.jpg").write_bytes(b"replaced")
    with pytest.raises(Exception, match="changed since the run was planned"):
        source.read(plan.items[0])


def test_a_chunk_of_videos_takes_them_in_turn(photos, weights, tmp_path_factory, tmp_path):
    """More videos in one chunk than the model's queue has room for at once: each is answered, none fails the task."""
    folder = tmp_path / "videos"
    folder.mkdir()
    for i in range(6):
        (folder / f"clip-{i}.mp4").write_bytes((photos / "clip.mp4").read_bytes())
    env = batch_env(weights, tmp_path_factory, MAX_QUEUE="1")
    done = run_batch(["--input", str(folder), "--output", str(tmp_path / "out"), "--chunk-size", "6", "--imgsz", "64"], env)
    assert done.returncode == 0, done.stdout[-2000:]
    lines = read_lines((tmp_path / "out" / "results" / "chunk-000000.jsonl").read_text())
    assert Counter(Path(line["source"]["uri"]).name for line in lines) == {f"clip-{i}.mp4": VIDEO_FRAMES for i in range(6)}


def test_errors_an_earlier_attempt_wrote_are_the_chunks_errors(photos, weights, tmp_path_factory, tmp_path):
    """An attempt died between a chunk's errors object and its results object; the retry finds the errors already
    written: what they name is not written again as a result, so each input still appears once."""
    folder = tmp_path / "in"
    folder.mkdir()
    names = files(photos)[:3]
    for name in names:
        (folder / Path(name).name).write_bytes((photos / name).read_bytes())
    out = tmp_path / "out"
    first = sorted(folder.iterdir())[0]
    earlier = {"source": {"uri": str(first), "generation": first.stat().st_mtime_ns}, "stage": "infer",
               "error": {"code": 500, "status": "Internal Server Error", "message": "inference failed: RuntimeError"}}
    (out / "errors").mkdir(parents=True)
    (out / "errors" / "chunk-000000.jsonl").write_text(json.dumps(earlier) + "\n")
    done = run_batch(["--input", str(folder), "--output", str(out), "--imgsz", "64", "--max-failure-rate", "1"],
                     batch_env(weights, tmp_path_factory))
    assert done.returncode == 0, done.stdout[-2000:]
    results = read_lines((out / "results" / "chunk-000000.jsonl").read_text())
    assert sorted(line["source"]["uri"] for line in results) == [str(p) for p in sorted(folder.iterdir())[1:]]
    assert read_lines((out / "errors" / "chunk-000000.jsonl").read_text()) == [earlier]
    assert json.loads((out / "summary.json").read_text())["errors"] == 1


class HeldGcs:
    """A pass-through proxy in front of the GCS emulator for one batch process (its STORAGE_EMULATOR_HOST): the
    requests `hold(method, path, body)` accepts wait until release(). `held` is set when the first one arrives: a
    barrier the process runs into at a known point of its work, which the test can see."""

    def __init__(self, upstream: str, hold):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.held, self._released = threading.Event(), threading.Event()
        proxy = self

        class Forward(BaseHTTPRequestHandler):
            def forward(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if hold(self.command, self.path, body):
                    proxy.held.set()
                    proxy._released.wait(300)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length", "connection")}
                try:
                    answer = requests.request(self.command, upstream + self.path, headers=headers, data=body or None,
                                              stream=True, allow_redirects=False, timeout=60)
                    content = answer.raw.read(decode_content=False)
                    self.send_response(answer.status_code)
                    for key, value in answer.raw.headers.items():
                        if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                            self.send_header(key, value)
                    self.send_header("Content-Length", str(len(content)))
                    self.end_headers()
                    self.wfile.write(content)
                except OSError:  # the process went away while its request was held
                    pass

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = forward

            def log_message(self, *args):
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_port}"
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def release(self) -> None:
        self._released.set()

    def close(self) -> None:
        self.release()
        self._httpd.shutdown()


def test_two_attempts_at_the_same_share_write_each_chunk_once(gcs, photos, weights, tmp_path_factory, tmp_path):
    """Two processes with the same task index at once (a retry racing an attempt Cloud Run thought lost): every chunk
    is written by exactly one of them; the other's uploads get 412 and are skipped. The overlap is made certain: the
    first attempt, its share planned and every chunk still to do, is held at its first upload until the second has
    written them all."""
    args = ["--input", f"gs://{IN_BUCKET}/shoot", "--glob", "a/*", "--output", f"gs://{OUT_BUCKET}/race",
            "--chunk-size", "5", *params_args(PARAMS)]
    env = batch_env(weights, tmp_path_factory)
    chunks = -(-(IMAGES // 2) // 5)
    proxy = HeldGcs(gcs.url, lambda method, path, body: method == "POST" and b"race/results/" in body)
    try:
        held = start(args, {**env, "STORAGE_EMULATOR_HOST": proxy.url}, (0, 1), tmp_path / "attempt-held.log")
        wait_until(lambda: proxy.held.is_set() or held.poll() is not None, 300, "the first attempt's first upload")
        assert proxy.held.is_set(), (tmp_path / "attempt-held.log").read_text()[-3000:]
        free = start(args, env, (0, 1), tmp_path / "attempt-free.log")
        assert free.wait(300) == 0, (tmp_path / "attempt-free.log").read_text()[-3000:]
        proxy.release()
        assert held.wait(300) == 0, (tmp_path / "attempt-held.log").read_text()[-3000:]
    finally:
        proxy.close()
    held_log, free_log = (json_lines((tmp_path / f"attempt-{name}.log").read_text()) for name in ("held", "free"))
    assert todo(held_log) == todo(free_log) == chunks, "both attempts found every chunk still to do"
    assert sorted(chunks_written(free_log)) == list(range(chunks))
    skipped = [entry["chunk"] for entry in held_log if "chunk" in entry and entry.get("written") is False]
    assert sorted(skipped) == list(range(chunks)) and chunks_written(held_log) == [], \
        "each of the held attempt's uploads got 412 and was skipped"
    lines = [json.loads(line) for blob in gcs.client.list_blobs(OUT_BUCKET, prefix="race/results/")
             for line in blob.download_as_text().splitlines()]
    assert len(lines) == len({line["source"]["uri"] for line in lines}) == IMAGES // 2


def test_sigterm_while_the_input_is_listed_stops_at_once(gcs, weights, tmp_path_factory, tmp_path):
    """Listing a large bucket takes minutes: SIGTERM then must not wait for it (nor for a read, a write, or hashing
    the weights). The listing is held here until after the process has exited."""
    env = batch_env(weights, tmp_path_factory)
    proxy = HeldGcs(gcs.url, lambda method, path, body: method == "GET" and path.startswith(f"/storage/v1/b/{IN_BUCKET}/o?"))
    log = tmp_path / "task.log"
    proc = start(["--input", f"gs://{IN_BUCKET}/shoot", "--output", f"gs://{OUT_BUCKET}/held-listing",
                  *params_args(PARAMS)], {**env, "STORAGE_EMULATOR_HOST": proxy.url}, None, log)
    try:
        wait_until(lambda: proxy.held.is_set() or proc.poll() is not None, 300, "the input's listing")
        assert proxy.held.is_set(), log.read_text()[-3000:]
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(10)
        except subprocess.TimeoutExpired:
            code = None
        assert code == 128 + signal.SIGTERM, f"still running 10 s after SIGTERM (exit {code}): the listing held it"
        assert "SIGTERM: stopping" in log.read_text()
    finally:
        proxy.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_with_the_default_engine_every_line_comes_from_the_engine_it_keeps(bus_jpg, zidane_jpg, weights,
                                                                           tmp_path_factory, tmp_path):
    """ENGINE unset (OpenVINO on a CPU): the run starts once the engine is built and checked, so no line comes from
    PyTorch and the rest from OpenVINO; the answers are the .pt's within float noise."""
    from conftest import local_summary
    from test_engines import assert_as_the_pt

    folder = tmp_path / "in"
    folder.mkdir()
    for image in (bus_jpg, zidane_jpg):
        (folder / image.name).write_bytes(image.read_bytes())
    env = batch_env(weights, tmp_path_factory, ENGINE="", MODEL_CACHE_DIR=str(tmp_path / "cache"))
    done = run_batch(["--input", str(folder), "--output", str(tmp_path / "out")], env)
    assert done.returncode == 0, done.stderr[-3000:]
    messages = [entry.get("message", "") for entry in json_lines(done.stdout)]
    swapped = next(i for i, m in enumerate(messages) if m.startswith("serving with openvino"))
    first_chunk = next(i for i, m in enumerate(messages) if m.startswith("chunk 0: "))
    assert swapped < first_chunk, messages
    lines = [json.loads(line) for path in sorted((tmp_path / "out" / "results").glob("*.jsonl"))
             for line in path.read_text().splitlines()]
    assert sorted(Path(line["source"]["uri"]).name for line in lines) == ["bus.jpg", "zidane.jpg"]
    for line in lines:
        image = folder / Path(line["source"]["uri"]).name
        assert_as_the_pt(line["results"], local_summary(weights["detect"], str(image)))
