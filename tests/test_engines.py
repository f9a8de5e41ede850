"""Exported engines against the real server and a real GCS emulator: export, upload, reuse on restart, a stale key and
a corrupt artefact rebuilt, a failed export that keeps PyTorch serving. Parity: exact against the same artefact run
locally, within the documented tolerance against the .pt."""

from __future__ import annotations

import dataclasses
import tarfile
import time
from pathlib import Path

import pytest
import requests
from conftest import local_summary

from function.models import engines

pytestmark = pytest.mark.integration

BUCKET = "engine-weights"


@pytest.fixture(scope="module")
def exported() -> dict[str, tuple[str, Path, Path]]:
    """Artefacts the tests below export anyway, {engine: (task, weights, artefact)}, for the read-back test to open
    instead of exporting them again (it exports what a run of it alone has not)."""
    return {}


def wait_for_log(server, prefix: str, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in server.log_entries():
            if entry.get("message", "").startswith(prefix):
                return entry
        assert server.proc.poll() is None, server.log_text()
        time.sleep(0.5)
    raise AssertionError(f"no log line starting {prefix!r}:\n{server.log_text()}")


def messages(server) -> list[str]:
    return [entry.get("message", "") for entry in server.log_entries()]


def predict(server, image: Path) -> list[dict]:
    response = requests.post(server.url + "/predict", files={"file": image.open("rb")}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()["images"][0]["results"]


def assert_as_the_pt(served: list[dict], pt: list[dict]):
    """An f32 engine's answer against the .pt's summary: the same detections, within float noise (1e-4 in
    confidence, 1e-3 px)."""
    assert [(r["class"], r["name"]) for r in served] == [(r["class"], r["name"]) for r in pt]
    for ours, theirs in zip(served, pt):
        assert abs(ours["confidence"] - theirs["confidence"]) <= 1e-4, (ours, theirs)
        assert all(abs(ours["box"][k] - theirs["box"][k]) <= 1e-3 for k in theirs["box"]), (ours, theirs)


def assert_exact(weights: Path, artefact: Path, images: list[Path]):
    """An f32 engine run locally against the .pt: within float noise (engines.EXACT), not just the fp16 tolerance."""
    from ultralytics import YOLO

    pt, exported = YOLO(str(weights)), YOLO(str(artefact), task=YOLO(str(weights)).task)
    for image in images:
        reference, got = pt.predict(str(image), verbose=False)[0], exported.predict(str(image), verbose=False)[0]
        diff = engines.compare(reference, got, 0.25, engines.EXACT)
        assert diff.within(engines.EXACT), (image.name, diff.describe())


def test_onnx_is_exported_uploaded_and_reused_by_the_next_instance(gcs, start_server, weights, bus_jpg, zidane_jpg,
                                                                   tmp_path, exported):
    bucket = gcs.bucket(BUCKET)
    bucket.blob("pose/best.pt").upload_from_filename(str(weights["pose"]))
    env = {"MODEL": f"gs://{BUCKET}/pose/best.pt", "ENGINE": "onnx", "MODEL_CACHE_DIR": str(tmp_path / "first")}
    first = start_server(env)
    assert predict(first, bus_jpg) == local_summary(weights["pose"], str(bus_jpg)), "PyTorch serves until the swap"
    swapped = wait_for_log(first, "serving with onnx")
    assert swapped["source"] == "export" and swapped["difference"]["unmatched"] == 0
    name = f"pose/best.pt.engines/{swapped['key']}.onnx"
    assert swapped["artefact"] == f"gs://{BUCKET}/{name}"
    assert bucket.get_blob(name) is not None, "uploaded next to the weights"
    artefact = tmp_path / "first" / BUCKET / name
    for image in (bus_jpg, zidane_jpg):
        assert predict(first, image) == local_summary(artefact, str(image)), "exactly the artefact, run locally"
    assert_exact(weights["pose"], artefact, [bus_jpg, zidane_jpg])
    assert first.stop() == 0
    exported["onnx"] = ("pose", weights["pose"], artefact)

    second = start_server({**env, "MODEL_CACHE_DIR": str(tmp_path / "second")})  # a new instance, empty disk
    reused = wait_for_log(second, "serving with onnx")
    assert reused["source"] == "cache" and reused["key"] == swapped["key"]
    assert not any(m.startswith("exporting") for m in messages(second))
    assert predict(second, zidane_jpg) == local_summary(artefact, str(zidane_jpg))
    assert second.stop() == 0

    # Bit rot in storage (the recorded CRC32C no longer matches): the download is refused, the engine rebuilt and
    # the object replaced.
    stored = gcs.root / BUCKET / name
    with open(stored, "r+b") as f:
        f.seek(1000)
        f.write(b"\x00\x01\x02\x03")
    third = start_server({**env, "MODEL_CACHE_DIR": str(tmp_path / "third")})
    rebuilt = wait_for_log(third, "serving with onnx")
    assert rebuilt["source"] == "export"
    assert any("checksum mismatch" in m and "rebuilding" in m for m in messages(third))
    assert bucket.get_blob(name).download_as_bytes() == (tmp_path / "third" / BUCKET / name).read_bytes()
    assert third.stop() == 0


def test_openvino_beside_local_weights_stale_and_corrupt_artefacts_are_rebuilt(start_server, weights, bus_jpg,
                                                                              zidane_jpg, tmp_path, exported):
    env = {"MODEL": str(weights["detect"]), "ENGINE": "openvino", "MODEL_CACHE_DIR": str(tmp_path)}
    first = start_server(env)
    swapped = wait_for_log(first, "serving with openvino")
    artefact = Path(swapped["artefact"])
    assert artefact.parent == tmp_path / "engines" and artefact.name.endswith("_openvino_model.tar")
    for image in (bus_jpg, zidane_jpg):
        assert_as_the_pt(predict(first, image), local_summary(weights["detect"], str(image)))
    assert first.stop() == 0

    # A stale artefact (another runtime version: another key) is never picked up; garbage under the current key is
    # detected when it will not load, and rebuilt.
    spec = engines.engine_spec("openvino", weights["detect"], "cpu", 1)
    stale = tmp_path / "engines" / dataclasses.replace(spec, runtime="openvino 2020.1").filename
    stale.write_bytes(artefact.read_bytes())
    assert spec.filename == artefact.name
    artefact.write_bytes(b"not a tar at all" * 100)
    second = start_server(env)
    rebuilt = wait_for_log(second, "serving with openvino")
    assert rebuilt["source"] == "export" and rebuilt["key"] == swapped["key"]
    assert any("is unusable" in m for m in messages(second))
    assert tarfile.is_tarfile(artefact) and stale.exists()
    assert_as_the_pt(predict(second, bus_jpg), local_summary(weights["detect"], str(bus_jpg)))
    assert second.stop() == 0
    exported["openvino"] = ("detect", weights["detect"], artefact)


READ_BACK = """
import json, shutil, sys
from pathlib import Path
from ultralytics import YOLO
from function.models import engines

image, workdir, artefacts = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
read = {}
for engine, (task, weights, artefact) in artefacts.items():
    spec = engines.engine_spec(engine, Path(weights), "cpu", 1)
    (workdir / engine).mkdir()
    if artefact is None:  # not exported by an earlier test of this run
        built = engines.export(Path(weights), spec, "cpu", workdir / engine)
    else:  # a private copy: an OpenVINO tar is unpacked beside itself
        built = Path(shutil.copy(artefact, workdir / engine / Path(artefact).name))
    served = engines.open_engine(built, spec, "cpu", task, "best.pt").yolo.predictor.model.backend
    if engine == "onnx":
        options = served.session.get_session_options()
        read["onnx_threads"] = [options.intra_op_num_threads, options.inter_op_num_threads]
        continue
    plain = YOLO(str(engines._unpacked_dir(built)), task=task)
    plain.predict(image, verbose=False)
    plain = plain.predictor.model.backend
    read.update({
        "served_config": str(served.compile_model.keywords["config"].get("INFERENCE_PRECISION_HINT")),
        "served": str(served.ov_compiled_model.get_property("INFERENCE_PRECISION_HINT")),
        "served_threads": served.ov_compiled_model.get_property("INFERENCE_NUM_THREADS"),
        "served_pinning": served.ov_compiled_model.get_property("ENABLE_CPU_PINNING"),
        "plain_config": str(plain.compile_model.keywords["config"].get("INFERENCE_PRECISION_HINT")),
        "plain": str(plain.ov_compiled_model.get_property("INFERENCE_PRECISION_HINT")),
    })
print(json.dumps(read))
"""


def test_cpu_engines_are_compiled_in_f32_on_the_cores_the_process_has(weights, bus_jpg, tmp_path, exported):
    """OpenVINO would choose bf16 on CPUs with AVX-512 BF16 or AMX (answers move by pixels there); the served model's
    compile carries f32 itself, read back from the compiled model; Ultralytics' own compile carries no such hint, and
    computes in bf16 on such a CPU, in f32 on any other (most CI machines: there the pin changes nothing, and the
    test says so). Threads: run on one core of this machine (an affinity of one, as a container with a 1-CPU quota),
    both runtimes use one thread, unpinned, where left alone they count the host's cores. In a process of its own, as
    the server runs it (two runtimes are not the test runner's), on the artefacts the tests above exported."""
    import json
    import os
    import subprocess
    import sys

    artefacts = {engine: [*exported[engine][:2], exported[engine][2]] if engine in exported else
                 [task, weights[task], None] for engine, task in (("openvino", "detect"), ("onnx", "pose"))}
    one_core = {min(os.sched_getaffinity(0))}
    done = subprocess.run([sys.executable, "-c", READ_BACK, str(bus_jpg), str(tmp_path), json.dumps(artefacts, default=str)],
                          capture_output=True, text=True, timeout=600, preexec_fn=lambda: os.sched_setaffinity(0, one_core))
    assert done.returncode == 0, done.stderr[-3000:]
    read = json.loads(done.stdout.strip().splitlines()[-1])
    assert read["served_config"] == read["served"] == "<Type: 'float32'>", read
    assert read["plain_config"] == "None", read
    assert read["served_threads"] == 1 and read["served_pinning"] is False, read
    assert read["onnx_threads"] == [1, 1], read
    flags = set(Path("/proc/cpuinfo").read_text().split())
    if flags & {"avx512_bf16", "amx_bf16"}:  # on such a CPU OpenVINO left alone does not compute in f32
        assert read["plain"] != "<Type: 'float32'>", read
    else:  # on this one it does: the served compile's f32 is the same precision, pinned for the CPUs that differ
        assert read["plain"] == "<Type: 'float32'>", read


def test_cpu_cores_counts_the_affinity_and_the_cgroup_quota():
    import os
    import subprocess
    import sys

    from function.models.loaded import cpu_cores

    assert 1 <= cpu_cores() <= len(os.sched_getaffinity(0))
    one_core = {min(os.sched_getaffinity(0))}
    done = subprocess.run([sys.executable, "-c", "from function.models.loaded import cpu_cores; print(cpu_cores())"],
                          capture_output=True, text=True, timeout=60, preexec_fn=lambda: os.sched_setaffinity(0, one_core))
    assert done.stdout.strip() == "1", done.stderr


def test_an_engine_that_cannot_be_built_leaves_pytorch_serving(start_server, weights, bus_jpg, tmp_path):
    # TensorRT on the CPU (DEVICE=cpu: on any host, a GPU one with TensorRT installed too): the build fails, the reason
    # is logged, PyTorch serves on.
    server = start_server({"MODEL": str(weights["detect"]), "ENGINE": "tensorrt", "DEVICE": "cpu",
                           "MODEL_CACHE_DIR": str(tmp_path)})
    warning = wait_for_log(server, "ENGINE=tensorrt is not available, serving with PyTorch")
    assert warning["severity"] == "WARNING" and "tensorrt" in warning["message"]
    assert predict(server, bus_jpg) == local_summary(weights["detect"], str(bus_jpg))
    assert server.stop() == 0


# -- without a server ---------------------------------------------------------------------------------------------


def test_the_key_changes_with_every_input_it_depends_on(weights):
    spec = engines.engine_spec("onnx", weights["pose"], "cpu", 1)
    assert spec.device == "cpu" and spec.precision == "fp32" and spec.runtime.startswith("onnxruntime ")
    changed = {field.name: dataclasses.replace(spec, **{field.name: _other(getattr(spec, field.name))}).key
               for field in dataclasses.fields(spec)}
    assert spec.key not in changed.values() and len(set(changed.values())) == len(changed)
    assert engines.engine_spec("onnx", weights["pose"], "cpu", 1).key == spec.key, "stable across calls"


def _other(value):
    return (not value) if isinstance(value, bool) else value + 1 if isinstance(value, int) else f"{value}-other"


def test_auto_is_a_cpu_engine_on_the_cpu_and_tensorrt_on_a_gpu_only_where_it_is_installed(monkeypatch):
    import importlib.metadata

    assert engines.choose_engine("auto", "cpu") == "openvino", "measured the fastest exact CPU engine (docs/performance.md)"
    assert engines.choose_engine(None, "cpu") == "openvino", "unset on the CPU: auto"
    assert engines.choose_engine(None, "cuda:0") == "pytorch", "unset on a GPU: PyTorch until TensorRT is measured"
    assert engines.choose_engine("onnx", "cpu") == "onnx"
    installed = {}  # this host's packages do not decide the answer: both cases, here
    real_version = importlib.metadata.version

    def version(distribution):
        if distribution.startswith("tensorrt"):
            if distribution in installed:
                return installed[distribution]
            raise importlib.metadata.PackageNotFoundError(distribution)
        return real_version(distribution)

    monkeypatch.setattr(importlib.metadata, "version", version)
    assert engines.choose_engine("auto", "cuda:0") == "pytorch", "no TensorRT: PyTorch"
    installed["tensorrt-cu12"] = "10.3.0"
    assert engines.choose_engine("auto", "cuda:0") == "tensorrt"
    assert engines.choose_engine("auto", "cpu") == "openvino", "never TensorRT on the CPU"


def test_compare_allows_float_noise_and_borderline_detections_only(weights, bus_jpg):
    from ultralytics import YOLO
    from ultralytics.engine.results import Results

    result = YOLO(str(weights["pose"])).predict(str(bus_jpg), verbose=False)[0]
    boxes, keypoints = result.boxes.data.clone(), result.keypoints.data.clone()

    def results(boxes, keypoints):
        return Results(result.orig_img, "bus.jpg", result.names, boxes=boxes, keypoints=keypoints)

    assert engines.compare(result, results(boxes, keypoints), 0.25).describe() == {
        "conf": 0.0, "coords": 0.0, "mask_iou": 1.0, "unmatched": 0, "class_pixels": 0.0, "depth": 0.0}
    nudged = boxes.clone()
    nudged[:, :4] += 0.5  # float noise, half a pixel
    nudged[:, 4] -= 0.001
    assert engines.compare(result, results(nudged, keypoints), 0.25).within()
    moved = boxes.clone()
    moved[0, :4] += 0.2 * max(result.orig_shape)  # one box moved by a fifth of the image
    assert not engines.compare(result, results(moved, keypoints), 0.25).within()
    missing = engines.compare(result, results(boxes[1:], keypoints[1:]), 0.25)
    assert missing.unmatched == (1 if boxes[0, 4] > 0.25 + engines.TOLERANCE.conf else 0)


def test_engine_setting_is_one_of_the_engines_or_auto():
    from function.errors import ConfigError
    from function.settings import load_settings

    assert load_settings({"MODEL": "m.pt"}).engine is None, "unset: the device's default"
    assert load_settings({"MODEL": "m.pt", "ENGINE": " "}).engine is None
    assert load_settings({"MODEL": "m.pt", "ENGINE": "default"}).engine is None
    assert load_settings({"MODEL": "m.pt", "ENGINE": " Auto "}).engine == "auto"
    with pytest.raises(ConfigError, match="ENGINE"):
        load_settings({"MODEL": "m.pt", "ENGINE": "tflite"})


@pytest.mark.parametrize("task, engine", [("semantic", "onnx"), ("semantic", "openvino"), ("depth", "onnx"),
                                          ("depth", "openvino")])
def test_per_pixel_tasks_serve_from_engines(start_server, weights, bus_jpg, tmp_path, task, engine):
    """The engine check compares class maps (the share of pixels with another id) and depth (the largest difference
    against the deepest pixel); the served maps are the engine's, within engines.EXACT of the .pt's."""
    import base64

    import cv2
    import numpy as np
    from ultralytics import YOLO

    server = start_server({"MODEL": str(weights[task]), "ENGINE": engine, "MODEL_CACHE_DIR": str(tmp_path)})
    swapped = wait_for_log(server, f"serving with {engine}")
    difference = swapped["difference"]
    assert difference["class_pixels"] <= engines.EXACT.class_pixels and difference["depth"] <= engines.EXACT.depth
    response = requests.post(server.url + "/predict", files={"file": bus_jpg.open("rb")}, data={"bits": "16"}, timeout=60)
    assert response.status_code == 200, response.text
    image = response.json()["images"][0]
    reference = YOLO(str(weights[task])).predict(str(bus_jpg), verbose=False)[0]
    answer = image["semantic_mask" if task == "semantic" else "depth"]
    pixels = cv2.imdecode(np.frombuffer(base64.b64decode(answer["data"]), np.uint8), cv2.IMREAD_UNCHANGED)
    if task == "semantic":
        mask = reference.semantic_mask.data.numpy()
        assert (pixels != mask).mean() <= engines.EXACT.class_pixels
        if engine == "onnx":  # exactly the artefact, run locally
            exported = YOLO(swapped["artefact"], task=task).predict(str(bus_jpg), verbose=False)[0]
            assert np.array_equal(pixels, exported.semantic_mask.data.numpy())
            assert image["results"] == exported.summary()
    else:
        from function.encode.maps import sample

        truth = sample(reference.depth.data.numpy(), tuple(answer["shape"]))
        deepest = float(reference.depth.data.max())
        error = np.abs(pixels * answer["max"] / 65535 - truth).max()
        assert error <= answer["max"] / 65535 + engines.EXACT.depth * deepest
    assert server.stop() == 0
