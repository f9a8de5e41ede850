"""Several models per endpoint (MODELS), against the real server: the classify model is the default, three models of
other tasks are loaded on demand with MAX_LOADED_MODELS=2, and one more id names a broken weights file.

Every id answers what that model's own `predict` gives, in every dialect; the least recently used model is evicted
and reloads on its next request; concurrent first requests cause one load; an id that is not configured is a 404 in
each dialect's shape; a broken model is a 503 for its id only; cycling through the models keeps the memory bounded.
"""

from __future__ import annotations

import base64
import warnings
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from conftest import local_summary
from test_dialects import _yolo, roboflow_expected, roboflow_seen

pytestmark = pytest.mark.integration

KEY = "models-key-0123456789"
AUTH = {"x-api-key": KEY}
ON_DEMAND = ("detect", "pose", "segment")
ROBOFLOW_ROUTES = {"detect": "object_detection", "pose": "keypoints_detection", "segment": "instance_segmentation"}
MB = 2**20


@pytest.fixture(scope="module")
def broken_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("broken") / "broken.pt"
    path.write_bytes(b"not a model")
    return path


@pytest.fixture(scope="module")
def server(start_server, weights, broken_weights):
    models = ",".join(f"{task}={weights[task]}" for task in ON_DEMAND) + f",broken={broken_weights}"
    return start_server({"MODEL": str(weights["classify"]), "MODELS": models, "MAX_LOADED_MODELS": "2",
                         "API_KEYS": KEY})


def listing(server) -> dict:
    response = requests.get(server.url + "/models", headers=AUTH, timeout=10)
    assert response.status_code == 200
    return {m["id"]: m for m in response.json()["models"]}


def samples(server) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(server.url + "/metrics", timeout=10).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def loads(server, model_id: str) -> float:
    return samples(server).get(("yolo_model_loads_total", (("model", model_id), ("outcome", "loaded"))), 0.0)


def platform(server, model_id: str, image, **data) -> requests.Response:
    with open(image, "rb") as f:
        return requests.post(f"{server.url}/api/models/{model_id}/predict", headers=AUTH, files={"file": f},
                             data=data, timeout=120)


def test_ten_concurrent_first_requests_cause_one_load(server, weights, bus_jpg):
    assert not listing(server)["detect"]["loaded"] and loads(server, "detect") == 0
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda _: platform(server, "detect", bus_jpg), range(10)))
    assert [a.status_code for a in answers] == [200] * 10
    assert loads(server, "detect") == 1
    expected = local_summary(weights["detect"], str(bus_jpg))
    assert all(a.json()["images"][0]["results"] == expected for a in answers)


def test_models_lists_every_id_with_its_task_memory_and_load_time(server, bus_jpg):
    assert platform(server, "detect", bus_jpg).status_code == 200
    body = requests.get(server.url + "/models", headers=AUTH, timeout=10).json()
    assert body["default"] == "classify" and body["max_loaded_models"] == 2 and body["model_memory_mb"] is None
    models = {m["id"]: m for m in body["models"]}
    assert list(models) == ["classify", "detect", "pose", "segment", "broken"]
    assert models["classify"]["default"] and models["classify"]["loaded"] and models["classify"]["task"] == "classify"
    detect = models["detect"]
    assert detect["loaded"] and detect["task"] == "detect" and detect["memory_mb"] > 0 and detect["load_seconds"] > 0
    if not models["pose"]["loads"]:
        assert models["pose"]["task"] is None and not models["pose"]["loaded"]  # found at its first load
    ready = requests.get(server.url + "/readyz", timeout=10).json()
    assert ready == {"status": "ready", "model": "classify.pt", "task": "classify", "models": 5}
    assert requests.get(server.url + "/models", timeout=10).status_code == 401


def test_every_id_answers_as_its_own_model_in_every_dialect(server, weights, bus_jpg):
    warnings.simplefilter("ignore")
    from inference_sdk import InferenceHTTPClient

    sdk = InferenceHTTPClient(api_url=server.url, api_key=KEY)
    image64 = base64.b64encode(bus_jpg.read_bytes()).decode()
    for model_id in ON_DEMAND:
        expected = local_summary(weights[model_id], str(bus_jpg))
        assert platform(server, model_id, bus_jpg).json()["images"][0]["results"] == expected
        with open(bus_jpg, "rb") as f:
            hub = requests.post(f"{server.url}/v1/predict/{model_id}", headers=AUTH, files={"file": f}, timeout=120)
        assert hub.json()["images"][0]["results"] == local_summary(weights[model_id], str(bus_jpg), iou=0.45)
        local = _yolo(str(weights[model_id])).predict(str(bus_jpg), verbose=False, conf=0.4, iou=0.3)[0]
        hosted = requests.post(f"{server.url}/{model_id}/3", params={"api_key": KEY}, data=image64, timeout=120)
        assert roboflow_seen(hosted.json()) == roboflow_expected(local)
        served = requests.post(f"{server.url}/infer/{ROBOFLOW_ROUTES[model_id]}", timeout=120, json={
            "model_id": f"{model_id}/1", "api_key": KEY, "image": {"type": "base64", "value": image64}})
        assert roboflow_seen(served.json()) == roboflow_expected(local)
        assert roboflow_seen(sdk.infer(str(bus_jpg), model_id=f"{model_id}/1")) == roboflow_expected(local)
    with open(bus_jpg, "rb") as f:  # the default model, as ever
        default = requests.post(f"{server.url}/predict", headers=AUTH, files={"file": f}, timeout=120).json()
    assert default["images"][0]["results"] == local_summary(weights["classify"], str(bus_jpg))
    assert default["metadata"]["task"] == "classify"


def test_the_least_recently_used_model_is_evicted_and_reloads(server, weights, bus_jpg):
    for model_id in ("detect", "pose", "detect", "segment"):  # pose is now the least recently used of the two
        assert platform(server, model_id, bus_jpg).status_code == 200
    models = listing(server)
    assert {m for m in ON_DEMAND if models[m]["loaded"]} == {"detect", "segment"}
    before = loads(server, "pose")
    answer = platform(server, "pose", bus_jpg)
    assert answer.json()["images"][0]["results"] == local_summary(weights["pose"], str(bus_jpg))
    assert loads(server, "pose") == before + 1
    models = listing(server)
    assert {m for m in ON_DEMAND if models[m]["loaded"]} == {"segment", "pose"}
    evicted = samples(server).get(("yolo_model_evictions_total", (("model", "detect"),)), 0)
    assert evicted >= 1


def test_an_unknown_id_is_404_in_every_dialect(server, bus_jpg):
    image64 = base64.b64encode(bus_jpg.read_bytes()).decode()
    platform_404 = platform(server, "nope", bus_jpg)
    assert platform_404.status_code == 404 and platform_404.json()["error"]["code"] == 404
    with open(bus_jpg, "rb") as f:
        hub = requests.post(f"{server.url}/v1/predict/nope", headers=AUTH, files={"file": f}, timeout=60)
    assert hub.status_code == 404 and hub.json()["success"] is False
    hosted = requests.post(f"{server.url}/nope/1", params={"api_key": KEY}, data=image64, timeout=60)
    assert hosted.status_code == 404 and list(hosted.json()) == ["message"]
    served = requests.post(f"{server.url}/infer/object_detection", timeout=60, json={
        "model_id": "nope/1", "api_key": KEY, "image": {"type": "base64", "value": image64}})
    assert served.status_code == 404 and list(served.json()) == ["message"]
    added = requests.post(f"{server.url}/model/add", timeout=60, json={"model_id": "nope/1", "api_key": KEY})
    assert added.status_code == 404
    # A path is an id like any other: nothing is loaded from what a client names.
    by_path = requests.post(f"{server.url}/infer/object_detection", timeout=60, json={
        "model_id": "/tmp/x.pt", "api_key": KEY, "image": {"type": "base64", "value": image64}})
    assert by_path.status_code == 404
    assert "nope" not in listing(server)


def test_a_broken_model_is_503_for_its_id_only(server, weights, bus_jpg):
    refused = platform(server, "broken", bus_jpg)
    assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 1
    assert "could not be loaded" in refused.json()["error"]["message"]
    assert platform(server, "broken", bus_jpg).status_code == 503  # not retried at once
    assert listing(server)["broken"]["error"]
    assert platform(server, "detect", bus_jpg).status_code == 200
    assert requests.get(server.url + "/readyz", timeout=10).status_code == 200


def test_memory_stays_bounded_while_cycling_through_the_models(server, bus_jpg):
    def rss() -> float:
        return samples(server)[("process_resident_memory_bytes", ())]

    for model_id in ON_DEMAND:
        assert platform(server, model_id, bus_jpg).status_code == 200
    settled = rss()
    footprints = [listing(server)[m]["memory_mb"] * MB for m in ON_DEMAND]
    for _ in range(10):
        for model_id in ON_DEMAND:
            assert platform(server, model_id, bus_jpg).status_code == 200
            assert sum(listing(server)[m]["loaded"] for m in ON_DEMAND) <= 2
    # Two models loaded at a time throughout: ten cycles (30 loads, 30 evictions) leave less than one more model.
    assert rss() < settled + max(footprints)


def test_a_memory_bound_below_two_models_keeps_one_loaded(start_server, weights, bus_jpg):
    # Below any one model's footprint (measured footprints vary by tens of MB from load to load: RSS), so what stays is
    # exactly what the bound may not evict: the pinned model and the one just used.
    models = ",".join(f"{task}={weights[task]}" for task in ON_DEMAND)
    tight = start_server({"MODEL": str(weights["classify"]), "MODELS": models, "MAX_LOADED_MODELS": "3",
                          "MODEL_MEMORY_MB": "1", "API_KEYS": KEY, "PIN": "segment"})
    assert listing(tight)["segment"]["loaded"]  # pinned: loaded before /readyz said ready
    for model_id in ("detect", "pose", "detect"):
        assert platform(tight, model_id, bus_jpg).status_code == 200
        loaded = [m for m in ON_DEMAND if listing(tight)[m]["loaded"]]
        assert "segment" in loaded and model_id in loaded
        # The pinned model and the one in use; the bound evicted the other, whatever its recency.
        assert len(loaded) == 2, loaded


def test_the_predict_page_picks_a_model(server, browser, weights, bus_jpg):
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(server.url + "/", wait_until="networkidle")
        assert page.is_hidden("#model-pick"), "GET /models takes the key: no picker without it"
        page.fill("#api-key", KEY)
        page.press("#api-key", "Tab")  # `change`: the page lists the models with the key
        page.wait_for_selector("[data-testid=model-picker]", state="visible", timeout=10_000)
        options = page.eval_on_selector_all("[data-testid=model-picker] option", "os => os.map(o => [o.value, o.textContent])")
        assert [value for value, _ in options] == ["", "detect", "pose", "segment", "broken"]
        assert options[0][1] == "classify (classify) · default"
        page.select_option("[data-testid=model-picker]", "pose")
        assert "/api/models/pose/predict" in page.text_content("#curl")
        with page.expect_response(lambda r: r.url.endswith("/api/models/pose/predict"), timeout=120_000) as answer:
            page.click("[data-testid=example-bus]")
        body = answer.value.json()
        assert body["metadata"]["task"] == "pose"
        assert body["images"][0]["results"] == local_summary(weights["pose"], str(bus_jpg))
    finally:
        context.close()


def test_an_on_demand_model_serves_pytorch_at_once_and_its_engine_from_the_next_load(start_server, weights, bus_jpg,
                                                                                     tmp_path):
    """An export takes seconds: never on a request's path. The first load serves PyTorch (Ultralytics' own answers)
    while ONNX is built in the background; after an eviction the model loads with the engine, checked against the .pt."""
    from test_engines import assert_as_the_pt, wait_for_log

    models = f"detect={weights['detect']},pose={weights['pose']}"
    engine_server = start_server({"MODEL": str(weights["classify"]), "MODELS": models, "MAX_LOADED_MODELS": "1",
                                  "ENGINE": "onnx", "MODEL_CACHE_DIR": str(tmp_path), "API_KEYS": KEY})
    first = platform(engine_server, "detect", bus_jpg)
    assert first.status_code == 200
    assert first.json()["images"][0]["results"] == local_summary(weights["detect"], str(bus_jpg)), "PyTorch, exactly"
    built = wait_for_log(engine_server, "model 'detect': onnx engine built at ")
    assert built["artefact"].startswith(str(tmp_path / "engines" / "onnx-fp32-"))
    assert platform(engine_server, "pose", bus_jpg).status_code == 200  # evicts detect (one model at a time)
    again = platform(engine_server, "detect", bus_jpg)
    assert again.status_code == 200
    engine_server.wait_for_log("model 'detect' loaded (detect, onnx)", timeout=10)
    assert_as_the_pt(again.json()["images"][0]["results"], local_summary(weights["detect"], str(bus_jpg)))
    assert engine_server.stop() == 0


def test_a_request_waits_for_its_models_load_within_its_deadline(start_server, weights, bus_jpg, tmp_path):
    """Models whose weights are slow to arrive (a large file from a slow store): a first request is a 504 at the
    request's deadline while the load goes on; another model loads and serves meanwhile; with MAX_LOADED_MODELS loads
    waiting, one more is a 429; once the store answers, each slow model was loaded once and answers as its .pt."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    released = threading.Event()
    body = weights["detect"].read_bytes()

    class SlowWeights(BaseHTTPRequestHandler):
        def do_GET(self):
            released.wait(60)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    store = ThreadingHTTPServer(("127.0.0.1", 0), SlowWeights)
    threading.Thread(target=store.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{store.server_port}"
        models = f"slow={url}/slow.pt,slow2={url}/slow2.pt,pose={weights['pose']},segment={weights['segment']}"
        slow = start_server({"MODEL": str(weights["classify"]), "API_KEYS": KEY, "REQUEST_TIMEOUT_S": "3",
                             "MODELS": models, "MAX_LOADED_MODELS": "2", "MODEL_CACHE_DIR": str(tmp_path)})
        refused = platform(slow, "slow", bus_jpg)
        assert refused.status_code == 504
        assert refused.json()["error"]["message"] == "Model 'slow' did not load within REQUEST_TIMEOUT_S=3 s"
        assert not listing(slow)["slow"]["loaded"]
        assert platform(slow, "pose", bus_jpg).status_code == 200  # the others load and serve while it downloads
        assert platform(slow, "slow2", bus_jpg).status_code == 504  # two loads waiting now: MAX_LOADED_MODELS
        full = platform(slow, "segment", bus_jpg)
        assert full.status_code == 429 and int(full.headers["Retry-After"]) >= 1
        assert "2 models are already waiting to load" in full.json()["error"]["message"]
        with open(bus_jpg, "rb") as f:  # the default model never waits for a load
            assert requests.post(slow.url + "/predict", headers=AUTH, files={"file": f}, timeout=60).status_code == 200
        released.set()
        for model_id in ("slow", "slow2"):  # the same loads, finished (or finishing within this deadline)
            answer = platform(slow, model_id, bus_jpg)
            assert answer.status_code == 200
            assert answer.json()["images"][0]["results"] == local_summary(weights["detect"], str(bus_jpg))
            assert loads(slow, model_id) == 1
        assert platform(slow, "segment", bus_jpg).status_code == 200
        assert slow.stop() == 0
    finally:
        released.set()
        store.shutdown()
