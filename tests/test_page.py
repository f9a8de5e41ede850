"""The Predict page (GET /) in real headless Chromium, driven by Playwright, against the real server.

Every test checks on the way out that the page asked nothing of any origin but the server's own and threw no error.
Screenshots of each rendering land in artifacts/screenshots/; a detect one is also kept as docs/predict-page.png.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import time

import numpy as np
import pytest
from conftest import ARTIFACTS, ROOT
from PIL import Image

pytestmark = pytest.mark.integration

KEY = "page-key-0123456789abcdef"
TASKS = ("segment", "pose", "classify", "obb")
SHOTS = ARTIFACTS / "screenshots"
README_SHOT = ROOT / "docs" / "predict-page.png"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
PREDICT = "**/predict"

# Chromium does not hand Playwright the body of a multipart upload that holds a file, so the tests read the form the
# page gives fetch(): every FormData sent is kept on window.__sent (test instrumentation only; the page knows nothing).
RECORD_FORMS = """(() => {
  const sent = (window.__sent = []);
  const realFetch = window.fetch.bind(window);
  window.fetch = (input, init = {}) => {
    if (init.body instanceof FormData) sent.push([...init.body.entries()]);
    return realFetch(input, init);
  };
})();"""
READ_FORM = """async (index) => {
  const out = {};
  for (const [name, value] of window.__sent.at(index)) {
    if (!(value instanceof Blob)) { out[name] = value; continue; }
    const bytes = new Uint8Array(await value.arrayBuffer());
    let binary = '';
    for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    out[name] = {filename: value.name, type: value.type, base64: btoa(binary)};
  }
  return out;
}"""

# Everything drawn over the image, read back from the DOM in image coordinates and on-screen pixels.
READ_OVERLAY = """() => {
  const svg = document.querySelector('[data-testid=overlay]');
  const rect = (el) => { const r = el.getBoundingClientRect(); return {left: r.left, top: r.top, width: r.width, height: r.height}; };
  const points = (el) => el.getAttribute('points').trim().split(/\\s+/).map((p) => p.split(',').map(Number));
  const num = (el, name) => Number(el.getAttribute(name));
  const img = document.querySelector('[data-testid=preview]');
  return {
    viewBox: (svg.getAttribute('viewBox') || '').split(' ').filter(Boolean).map(Number),
    svg: rect(svg),
    img: {...rect(img), naturalWidth: img.naturalWidth, naturalHeight: img.naturalHeight, hidden: img.hidden},
    results: [...svg.querySelectorAll('[data-testid=result]')].map((g) => ({
      index: Number(g.dataset.index), cls: Number(g.dataset.class), name: g.dataset.name, confidence: Number(g.dataset.confidence),
      box: [...g.querySelectorAll('[data-testid=box]')].map((r) => ({
        x1: num(r, 'x'), y1: num(r, 'y'), x2: num(r, 'x') + num(r, 'width'), y2: num(r, 'y') + num(r, 'height'),
        stroke: getComputedStyle(r).stroke, fill: getComputedStyle(r).fill, screen: rect(r)})),
      obb: [...g.querySelectorAll('[data-testid=obb]')].map((p) => ({points: points(p), stroke: getComputedStyle(p).stroke})),
      mask: [...svg.querySelectorAll(`[data-testid=mask][data-index="${g.dataset.index}"]`)].map((p) => ({points: points(p), fill: getComputedStyle(p).fill, layerOpacity: Number(getComputedStyle(p.parentElement).opacity)})),
      keypoints: [...g.querySelectorAll('[data-testid=keypoint]')].map((c) => ({k: Number(c.dataset.k), x: num(c, 'cx'), y: num(c, 'cy'), fill: getComputedStyle(c).fill})),
      limbs: [...g.querySelectorAll('[data-testid=limb]')].map((l) => ({x1: num(l, 'x1'), y1: num(l, 'y1'), x2: num(l, 'x2'), y2: num(l, 'y2'), stroke: getComputedStyle(l).stroke})),
    })),
    labels: [...svg.querySelectorAll('[data-testid=label]')].map((l) => l.textContent),
    rows: [...document.querySelectorAll('[data-testid=detection-row]')].map((r) => r.textContent),
    top5: [...document.querySelectorAll('[data-testid=top5-row]')].map((r) => ({
      name: r.dataset.name, cls: Number(r.dataset.class), confidence: Number(r.dataset.confidence),
      bar: r.querySelector('[data-testid=top5-bar]').getBoundingClientRect().width,
      track: r.querySelector('[data-testid=top5-bar]').parentElement.getBoundingClientRect().width,
      color: getComputedStyle(r.querySelector('[data-testid=top5-bar]')).backgroundColor})),
    json: document.querySelector('[data-testid=json]').textContent,
    speed: Object.fromEntries([...document.querySelectorAll('[data-testid^=speed-]')].map((d) => [d.dataset.testid, d.textContent])),
  };
}"""


# ---- fixtures ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def servers(start_server, task_server, weights):
    """detect with API keys and a 1 MB upload limit (this module's own), and the session's plain servers of the four
    other tasks, all started together."""
    task_server.start(*TASKS)
    detect = start_server({"MODEL": str(weights["detect"]), "API_KEYS": KEY, "MAX_UPLOAD_MB": "1"}, wait=False)
    return {"detect": detect.wait_ready(), **{task: task_server(task) for task in TASKS}}


class PageUnderTest:
    """A fresh browser context on the page, recording every request, response and error it sees."""

    def __init__(self, browser, server, viewport=DESKTOP, init_scripts=(), clock=False):
        self.server = server
        self.context = browser.new_context(viewport=viewport)
        self.context.add_init_script(RECORD_FORMS)
        for script in init_scripts:
            self.context.add_init_script(script)
        if clock:  # the page's timers run on a clock the test moves (page.clock), never on the machine's
            self.context.clock.install()
        self.page = self.context.new_page()
        self.requests, self.errors = [], []
        self.page.on("request", lambda request: self.requests.append(request))
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        # Chromium logs every HTTP error as a console error without its URL: responses are checked instead.
        self.page.on("console", lambda m: m.type == "error" and "Failed to load resource" not in m.text and self.errors.append(m.text))
        self.page.on("response", self._check_status)
        # Intercepting file choosers is switched on asynchronously: on from the start, no keypress can race it.
        self.page.on("filechooser", lambda chooser: None)
        self.expected_statuses: set[int] = set()  # HTTP errors the test itself provokes
        self.page.goto(server.url + "/", timeout=30_000)
        self.page.wait_for_load_state("networkidle")

    def _check_status(self, response) -> None:
        if response.status >= 400 and response.status not in self.expected_statuses:
            self.errors.append(f"{response.status} from {response.request.method} {response.url}")

    def predicts(self) -> list:
        return [r for r in self.requests if r.url.endswith("/predict")]

    def form(self, index: int = -1) -> dict:
        """The form fields of a predict request the page sent: name -> value, or (filename, type, bytes) for a file."""
        fields = self.page.evaluate(READ_FORM, index)
        return {k: (v["filename"], v["type"], base64.b64decode(v["base64"])) if isinstance(v, dict) else v for k, v in fields.items()}

    def enter_key(self, key: str) -> None:
        self.page.fill("#api-key", key)

    def run(self, action, status: int = 200) -> dict:
        """Do what triggers a prediction; wait for the response and for the page to finish drawing it."""
        with self.page.expect_response(PREDICT, timeout=60_000) as info:
            action()
        response = info.value
        assert response.status == status, response.text()
        self.page.wait_for_function("['done', 'error'].includes(document.body.dataset.state)", timeout=30_000)
        return response.json()

    def overlay(self) -> dict:
        return self.page.evaluate(READ_OVERLAY)

    def shot(self, name: str, full_page: bool = True) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)

    def close(self) -> None:
        origins = {self.server.url, "blob:" + self.server.url}
        foreign = [r.url for r in self.requests if not any(r.url.startswith(o + "/") for o in origins) and not r.url.startswith("data:")]
        self.context.close()
        assert not foreign, f"the page must only talk to its own endpoint: {foreign}"
        assert not self.errors, f"errors in the page: {self.errors}"


@pytest.fixture
def open_page(browser):
    opened = []

    def open_(server, viewport=DESKTOP, **options) -> PageUnderTest:
        opened.append(PageUnderTest(browser, server, viewport, **options))
        return opened[-1]

    yield open_
    for page in opened:
        page.close()


# ---- helpers -------------------------------------------------------------------------------------------------------


def palette_rgb(cls: int) -> str:
    """Ultralytics' colour for a class, as the browser computes a CSS colour."""
    from ultralytics.utils.plotting import Colors

    return "rgb({}, {}, {})".format(*Colors()(cls))


def annotator():
    from ultralytics.utils.plotting import Annotator

    return Annotator(np.zeros((8, 8, 3), np.uint8))


def css_rgb_from_bgr(triple) -> str:
    """Ultralytics draws pose colours with OpenCV on a BGR image: the triple is (blue, green, red) on screen."""
    b, g, r = (int(v) for v in triple)
    return f"rgb({r}, {g}, {b})"


def assert_aligned(overlay: dict, tolerance: float = 1.0) -> None:
    """The SVG maps image pixels to the screen exactly as the <img> does, and every box lands where it should."""
    img, svg = overlay["img"], overlay["svg"]
    width, height = overlay["viewBox"][2:]
    assert (img["naturalWidth"], img["naturalHeight"]) == (width, height)

    def mapping(box):  # object-fit: contain == preserveAspectRatio="xMidYMid meet"
        scale = min(box["width"] / width, box["height"] / height)
        return scale, box["left"] + (box["width"] - width * scale) / 2, box["top"] + (box["height"] - height * scale) / 2

    img_map, svg_map = mapping(img), mapping(svg)
    assert img_map == pytest.approx(svg_map, abs=0.5)
    scale, left, top = img_map
    assert width * scale > 100, "the image is shown"
    for result in overlay["results"]:
        for box in result["box"]:
            screen = box["screen"]
            assert screen["left"] == pytest.approx(left + box["x1"] * scale, abs=tolerance)
            assert screen["top"] == pytest.approx(top + box["y1"] * scale, abs=tolerance)
            assert screen["width"] == pytest.approx((box["x2"] - box["x1"]) * scale, abs=tolerance)
            assert screen["height"] == pytest.approx((box["y2"] - box["y1"]) * scale, abs=tolerance)


def assert_boxes_match(overlay: dict, results: list[dict]) -> None:
    assert len(overlay["results"]) == len(results)
    for drawn, result in zip(overlay["results"], results):
        assert (drawn["cls"], drawn["name"], drawn["confidence"]) == (result["class"], result["name"], result["confidence"])
        (box,) = drawn["box"]
        assert {k: box[k] for k in ("x1", "y1", "x2", "y2")} == pytest.approx(result["box"], abs=1e-3)
        assert box["stroke"] == palette_rgb(result["class"]) and box["fill"] == "none"
    assert overlay["labels"] == [f"{r['name']} {r['confidence']:.2f}" for r in results]


def flat(points) -> list[float]:
    return [float(v) for point in points for v in point]


def answer_once(answered: list, status: int, body: dict):
    """A route handler: the first request it sees gets this answer (with Retry-After: 1), the rest go to the server."""

    def handle(route):
        if answered:
            route.continue_()
        else:
            answered.append(route.request.url)
            route.fulfill(status=status, headers={"Retry-After": "1"}, json=body)

    return handle


def noise_png(megabytes: float) -> bytes:
    side = int((megabytes * 2**20 / 3) ** 0.5) + 1
    pixels = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG", compress_level=0)
    return out.getvalue()


# ---- packaging -----------------------------------------------------------------------------------------------------


def test_every_page_asset_ships_in_the_package():
    """The image installs the package (pip install .): package-data must name every file the page serves."""
    import glob
    import tomllib

    package = ROOT / "function"
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["function"]
    shipped = {path for pattern in patterns for path in glob.glob(pattern, root_dir=package) if (package / path).is_file()}
    assets = {str(path.relative_to(package)) for path in (package / "static").rglob("*") if path.is_file()}
    assert assets - shipped == set(), "add these to [tool.setuptools.package-data] in pyproject.toml"
    assert {"static/index.html", "static/predict.js", "static/predict.css", "static/examples/bus.jpg", "static/examples/zidane.jpg"} <= assets


# ---- detect: upload, examples, parameters, keys, errors ----------------------------------------------------------


def test_upload_draws_the_response_aligned_at_any_size(servers, open_page, bus_jpg):
    ui = open_page(servers["detect"])
    page = ui.page
    page.wait_for_selector("[data-testid=task]:text('detect')")
    assert page.input_value("#api-key") == ""
    ui.enter_key(KEY)
    body = ui.run(lambda: page.set_input_files("[data-testid=file]", str(bus_jpg)))

    (request,) = ui.predicts()
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert ui.form() == {"file": ("bus.jpg", "image/jpeg", bus_jpg.read_bytes()), "conf": "0.25", "iou": "0.70", "imgsz": "640"}

    results = body["images"][0]["results"]
    assert results, "the detect model finds people on bus.jpg"
    overlay = ui.overlay()
    assert overlay["viewBox"] == [0, 0, 810, 1080]
    assert_boxes_match(overlay, results)
    assert_aligned(overlay)
    assert len(overlay["rows"]) == len(results)
    assert overlay["rows"][0] == f"{results[0]['name']}{results[0]['confidence']:.2f}"
    for name in ("preprocess", "inference", "postprocess", "network"):
        assert re.fullmatch(r"\d+\.\d ms", overlay["speed"][f"speed-{name}"]), overlay["speed"]
    assert overlay["speed"]["speed-inference"] == f"{body['images'][0]['speed']['inference']:.1f} ms"
    assert json.loads(overlay["json"]) == body
    assert page.get_attribute("[data-testid=error]", "hidden") is not None
    ui.shot("detect-upload")
    ui.shot("predict-page", full_page=False)
    if not README_SHOT.exists() or os.environ.get("UPDATE_SCREENSHOTS") == "1":  # committed: rewritten only on request
        README_SHOT.parent.mkdir(exist_ok=True)
        README_SHOT.write_bytes((SHOTS / "predict-page.png").read_bytes())

    # A phone: the same boxes, still on the people, and nothing wider than the screen.
    page.set_viewport_size(PHONE)
    page.wait_for_timeout(300)
    phone = ui.overlay()
    assert_boxes_match(phone, results)
    assert_aligned(phone)
    assert phone["img"]["width"] < overlay["img"]["width"]
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    ui.shot("detect-phone")


def test_examples_are_preloaded_and_a_click_infers(servers, open_page, zidane_jpg):
    ui = open_page(servers["detect"])
    page = ui.page
    examples = [r.url for r in ui.requests if "/static/examples/" in r.url]
    assert sorted(examples) == [servers["detect"].url + "/static/examples/bus.jpg", servers["detect"].url + "/static/examples/zidane.jpg"]
    ui.enter_key(KEY)

    before = len(ui.requests)
    started = time.monotonic()
    body = ui.run(lambda: page.click("[data-testid=example-zidane]"))
    assert [r.url for r in ui.requests[before:] if not r.url.startswith("blob:")] == [servers["detect"].url + "/predict"], \
        "a click sends the preloaded image: no download first"
    assert ui.form()["file"] == ("zidane.jpg", "image/jpeg", zidane_jpg.read_bytes())
    assert time.monotonic() - started < 30
    results = body["images"][0]["results"]
    overlay = ui.overlay()
    assert overlay["viewBox"] == [0, 0, 1280, 720]
    assert_boxes_match(overlay, results)
    assert_aligned(overlay)
    assert "zidane.jpg" in page.text_content("[data-testid=status]")
    ui.shot("detect-example-zidane")

    # Drag and drop works as well as the file picker.
    data = (ROOT / "function/static/examples/bus.jpg").read_bytes()
    transfer = page.evaluate_handle(
        """(bytes) => { const t = new DataTransfer();
           t.items.add(new File([new Uint8Array(bytes)], 'dropped.jpg', {type: 'image/jpeg'})); return t; }""",
        list(data),
    )
    body = ui.run(lambda: page.dispatch_event("[data-testid=dropzone]", "drop", {"dataTransfer": transfer}))
    assert ui.form()["file"] == ("dropped.jpg", "image/jpeg", data)
    assert_boxes_match(ui.overlay(), body["images"][0]["results"])

    # And from the keyboard: Enter on the upload card opens the file chooser.
    page.focus("[data-testid=dropzone]")
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Enter")
    body = ui.run(lambda: chooser.value.set_files(str(zidane_jpg)))
    assert ui.form()["file"][0] == "zidane.jpg"
    assert_boxes_match(ui.overlay(), body["images"][0]["results"])


def sent(page) -> int:
    """How many predict requests the page has made: counted by RECORD_FORMS the moment it calls fetch()."""
    return page.evaluate("window.__sent.length")


def test_parameter_changes_rerun_once_after_the_debounce(servers, open_page):
    ui = open_page(servers["detect"], clock=True)
    page = ui.page
    ui.enter_key(KEY)
    first = ui.run(lambda: page.click("[data-testid=example-bus]"))
    assert sent(page) == 1
    page.clock.pause_at(page.evaluate("Date.now()") + 1000)  # from here the page's time moves only when told

    # Five quick steps of the confidence slider, 60 ms apart: nothing is sent while they come, nor 499 ms after the
    # last; one request at 500 ms; nothing more after.
    page.focus("[data-testid=conf]")
    for _ in range(5):
        page.keyboard.press("ArrowRight")
        page.clock.run_for(60)
    assert page.text_content("#conf-value") == "0.30"
    page.clock.run_for(500 - 60 - 1)
    assert sent(page) == 1, "no request before the 500 ms debounce"
    body = ui.run(lambda: page.clock.run_for(1))
    page.clock.run_for(2000)
    assert sent(page) == 2, "a burst of changes is one request"
    assert ui.form()["conf"] == "0.30"
    expected = [r for r in first["images"][0]["results"] if r["confidence"] >= 0.30]
    assert [r["confidence"] for r in body["images"][0]["results"]] == pytest.approx([r["confidence"] for r in expected], abs=1e-4)
    assert_boxes_match(ui.overlay(), body["images"][0]["results"])

    # IoU and image size together: still one request, with both values.
    page.focus("[data-testid=iou]")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    page.click("[data-imgsz='1280']")
    assert page.get_attribute("[data-imgsz='1280']", "aria-pressed") == "true"
    assert page.get_attribute("[data-imgsz='640']", "aria-pressed") == "false"
    page.clock.run_for(499)
    assert sent(page) == 2
    body = ui.run(lambda: page.clock.run_for(1))
    page.clock.run_for(2000)
    assert sent(page) == 3
    assert (ui.form()["conf"], ui.form()["iou"], ui.form()["imgsz"]) == ("0.30", "0.68", "1280")
    assert_boxes_match(ui.overlay(), body["images"][0]["results"])
    ui.shot("detect-params")


STALE = {"images": [{"shape": [1080, 810], "results": [
    {"name": "stale", "class": 5, "confidence": 0.99, "box": {"x1": 1.0, "y1": 1.0, "x2": 100.0, "y2": 100.0}}],
    "speed": {"preprocess": 1, "inference": 1, "postprocess": 1}}], "metadata": {"imageCount": 1, "functionTimeCall": 0.01}}
# Test instrumentation: window.__read counts response bodies the page has read *and acted on* (the count moves in a
# task queued after the page's own code that follows `await response.text()` has run: the check that drops a stale
# answer, or the drawing of a current one).
COUNT_READS = """(() => {
  const realText = Response.prototype.text;
  window.__read = 0;
  Response.prototype.text = function () {
    return realText.call(this).then((text) => { setTimeout(() => { window.__read += 1; }); return text; });
  };
})();"""
NO_ABORT = "AbortController.prototype.abort = function () {};"


def test_a_stale_response_never_overwrites_a_newer_one(servers, open_page):
    """A newer request makes the page abort the older one; and if the older answer came anyway (it was already on
    its way), the page drops it by its sequence number. Each of the two is seen to happen, in turn."""
    for kind in ("aborted", "arrives anyway"):
        ui = open_page(servers["detect"], init_scripts=[COUNT_READS] + ([NO_ABORT] if kind == "arrives anyway" else []))
        page = ui.page
        ui.enter_key(KEY)
        held = []
        page.route(PREDICT, lambda route: route.continue_() if held else held.append(route))
        with page.expect_request(PREDICT) as older:
            page.click("[data-testid=example-bus]")
        page.focus("[data-testid=conf]")
        if kind == "aborted":
            with page.expect_event("requestfailed", lambda request: request == older.value, timeout=30_000):
                newer = ui.run(lambda: page.keyboard.press("ArrowRight"))  # the debounced rerun: the older is aborted
            assert older.value.failure, "the page cancelled the older request"
        else:
            newer = ui.run(lambda: page.keyboard.press("ArrowRight"))
            reads = page.evaluate("window.__read")
            assert len(held) == 1
            held[0].fulfill(status=200, json=STALE)  # not aborted: the stale answer reaches the page
            page.wait_for_function(f"window.__read > {reads}")  # ...and the page has read it and decided
        overlay = ui.overlay()
        assert_boxes_match(overlay, newer["images"][0]["results"])
        assert "stale" not in overlay["json"] and not any(r["name"] == "stale" for r in overlay["results"])


def test_a_wrong_api_key_shows_the_401_message(servers, open_page, browser):
    ui = open_page(servers["detect"])
    page = ui.page
    ui.expected_statuses.add(401)
    ui.enter_key("not-the-key")
    body = ui.run(lambda: page.click("[data-testid=example-bus]"), status=401)
    assert body["error"]["code"] == 401
    assert ui.predicts()[0].headers["authorization"] == "Bearer not-the-key"
    alert = page.text_content("[data-testid=error]")
    assert "(401 Unauthorized)" in alert and "API key" in alert
    assert page.is_visible("[data-testid=preview]"), "the image stays; the page is never blank"
    assert ui.overlay()["results"] == [] and ui.overlay()["rows"] == []
    assert page.evaluate("document.activeElement.id") == "api-key", "the key field gets the focus"
    ui.shot("error-401")

    # The right key re-runs the image by itself, and lives in this tab's session storage only.
    ui.enter_key(KEY)
    body = ui.run(lambda: None)
    assert_boxes_match(ui.overlay(), body["images"][0]["results"])
    assert page.is_hidden("[data-testid=error]")
    assert page.evaluate("Object.values(sessionStorage)") == [KEY]
    assert page.evaluate("localStorage.length") == 0
    page.reload(timeout=30_000)
    assert page.input_value("#api-key") == KEY
    other = open_page(servers["detect"])
    assert other.page.input_value("#api-key") == "", "another session starts without the key"


def test_errors_are_readable_messages(servers, open_page, tmp_path):
    ui = open_page(servers["detect"])
    page = ui.page
    ui.expected_statuses.update({413, 415, 429, 503})
    ui.enter_key(KEY)
    page.wait_for_selector("[data-testid=task]:text('detect')")

    # Over the page's 10 MB limit: refused in the browser, nothing sent.
    page.set_input_files("[data-testid=file]", files=[{"name": "huge.jpg", "mimeType": "image/jpeg", "buffer": b"\xff" * (12 * 2**20)}])
    assert "huge.jpg is 12.0 MB, over the 10 MB upload limit" in page.text_content("[data-testid=error]")
    assert page.is_visible("[data-testid=error]") and ui.predicts() == []
    assert "max 10 MB" in page.text_content("[data-testid=dropzone]")

    # Under 10 MB but over this server's MAX_UPLOAD_MB=1: the server's 413.
    big = tmp_path / "noise.png"
    big.write_bytes(noise_png(2))
    ui.run(lambda: page.set_input_files("[data-testid=file]", str(big)), status=413)
    assert "too large for this endpoint (413)" in page.text_content("[data-testid=error]")
    assert "MAX_UPLOAD_MB=1" in page.text_content("[data-testid=error]")
    ui.shot("error-413")

    # Not an image: the server's 415.
    text = tmp_path / "notes.txt"
    text.write_text("not an image\n")
    ui.run(lambda: page.set_input_files("[data-testid=file]", str(text)), status=415)
    assert "Not a supported image (415)" in page.text_content("[data-testid=error]")
    ui.shot("error-415")

    # 429 and 503 are answered here in the server's exact shape (a real overload or a cold start is not
    # reproducible on cue); the page says so, waits Retry-After, then runs the image again by itself.
    for status, title, message, words in (
        (429, "Too Many Requests", "Too many requests in flight", "busy (429)"),
        (503, "Service Unavailable", "The model is loading", "still loading (503)"),
    ):
        answered = []
        page.route(PREDICT, answer_once(answered, status, {"error": {"code": status, "status": title, "message": message}}))
        # The automatic retry, after Retry-After, goes through to the real server.
        with page.expect_response(lambda r: r.url.endswith("/predict") and r.status == 200, timeout=30_000) as retried:
            page.click("[data-testid=example-bus]")
            page.wait_for_selector("[data-testid=error]:not([hidden])")
            assert words in page.text_content("[data-testid=error]")
            ui.shot(f"error-{status}")
        body = retried.value.json()
        page.wait_for_function("document.body.dataset.state === 'done'")
        assert len(answered) == 1
        assert_boxes_match(ui.overlay(), body["images"][0]["results"])
        assert page.is_hidden("[data-testid=error]")
        page.unroute(PREDICT)

    # A page opened during a cold start says the model is loading, and shows it once readyz says ready.
    page.route("**/readyz", answer_once([], 503, {"error": {"code": 503, "status": "Service Unavailable", "message": "loading"}}))
    page.reload(timeout=30_000)
    page.wait_for_selector("[data-testid=model]:has-text('The model is loading')")
    page.wait_for_selector("[data-testid=task]:text('detect')", timeout=10_000)


def test_webcam_captures_a_frame_for_inference(servers, open_page):
    ui = open_page(servers["detect"])
    page = ui.page
    ui.enter_key(KEY)
    page.click("[data-testid=webcam]")
    page.wait_for_function("() => { const v = document.querySelector('[data-testid=video]'); return !v.hidden && v.videoWidth > 0 && !v.paused; }")
    ui.shot("webcam-live")
    assert ui.predicts() == [], "the live preview sends nothing until a frame is captured"

    body = ui.run(lambda: page.click("[data-testid=video]"))
    filename, content_type, data = ui.form()["file"]
    assert (filename, content_type) == ("webcam.jpg", "image/jpeg")
    frame = Image.open(io.BytesIO(data))
    assert frame.format == "JPEG"
    assert body["images"][0]["shape"] == [frame.height, frame.width]
    assert page.is_visible("[data-testid=preview]") and page.is_hidden("[data-testid=video]")
    overlay = ui.overlay()
    assert overlay["viewBox"] == [0, 0, frame.width, frame.height]
    assert body["images"][0]["results"], "the people the camera films are found"
    assert_boxes_match(overlay, body["images"][0]["results"])
    assert_aligned(overlay)
    ui.shot("webcam-capture")

    # A click on the captured frame restarts the webcam; Enter on the preview captures again.
    page.click("[data-testid=frame]")
    page.wait_for_function("() => { const v = document.querySelector('[data-testid=video]'); return !v.hidden && v.videoWidth > 0; }")
    page.focus("[data-testid=video]")
    body = ui.run(lambda: page.keyboard.press("Enter"))
    assert len(ui.predicts()) == 2 and ui.form()["file"][:2] == ("webcam.jpg", "image/jpeg")
    assert body["images"][0]["shape"][::-1] == list(Image.open(io.BytesIO(ui.form()["file"][2])).size)


# ---- the other tasks -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", TASKS)
def test_each_task_renders_its_overlay(servers, open_page, task):
    ui = open_page(servers[task])
    page = ui.page
    page.wait_for_selector(f"[data-testid=task]:text('{task}')")
    body = ui.run(lambda: page.click("[data-testid=example-bus]"))
    assert "authorization" not in ui.predicts()[0].headers, "no key set, none sent"
    results = body["images"][0]["results"]
    assert results, f"the {task} model gives results on bus.jpg"
    overlay = ui.overlay()
    ui.shot(task)

    if task == "classify":
        assert overlay["results"] == [] and overlay["labels"] == [], "classify draws nothing over the image"
        assert page.text_content("#list-title") == "Top-5 classes"
        assert [(t["name"], t["cls"], t["confidence"]) for t in overlay["top5"]] == [(r["name"], r["class"], r["confidence"]) for r in results]
        for bar, result in zip(overlay["top5"], results):
            assert bar["bar"] / bar["track"] == pytest.approx(result["confidence"], abs=0.01)
            assert bar["color"] == palette_rgb(result["class"])
        return

    assert len(overlay["results"]) == len(results)
    assert_aligned(overlay)
    for drawn, result in zip(overlay["results"], results):
        assert (drawn["cls"], drawn["confidence"]) == (result["class"], result["confidence"])
        if task == "obb":
            (polygon,) = drawn["obb"]
            corners = [[result["box"][f"x{i}"], result["box"][f"y{i}"]] for i in range(1, 5)]
            assert flat(polygon["points"]) == pytest.approx(flat(corners), abs=1e-3)
            assert polygon["stroke"] == palette_rgb(result["class"]) and drawn["box"] == []
        if task == "segment":
            (mask,) = drawn["mask"]
            assert flat(mask["points"]) == pytest.approx(flat(zip(result["segments"]["x"], result["segments"]["y"])), abs=1e-3)
            assert mask["fill"] == palette_rgb(result["class"]) and 0 < mask["layerOpacity"] < 1, "translucent masks"
            assert len(drawn["box"]) == 1
        if task == "pose":
            drawer = annotator()
            kp = result["keypoints"]
            shown = [k for k in range(17) if kp["visible"][k] >= 0.25]
            assert [p["k"] for p in drawn["keypoints"]] == shown
            for point in drawn["keypoints"]:
                assert (point["x"], point["y"]) == pytest.approx((kp["x"][point["k"]], kp["y"][point["k"]]), abs=1e-3)
                assert point["fill"] == css_rgb_from_bgr(drawer.kpt_color[point["k"]])
            limbs = [(i, a - 1, b - 1) for i, (a, b) in enumerate(drawer.skeleton) if a - 1 in shown and b - 1 in shown]
            assert len(drawn["limbs"]) == len(limbs)
            for line, (i, a, b) in zip(drawn["limbs"], limbs):
                assert (line["x1"], line["y1"], line["x2"], line["y2"]) == pytest.approx((kp["x"][a], kp["y"][a], kp["x"][b], kp["y"][b]), abs=1e-3)
                assert line["stroke"] == css_rgb_from_bgr(drawer.limb_color[i])
    if task == "pose":
        assert sum(len(d["keypoints"]) for d in overlay["results"]) > 17, "people on bus.jpg get their keypoints"


# ---- the per-pixel tasks -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pixel_servers(task_server):
    task_server.start("semantic", "depth")
    return {task: task_server(task) for task in ("semantic", "depth")}


READ_PIXEL_MAP = """(kind) => {
  const image = document.querySelector(`[data-testid=overlay] [data-testid=${kind}]`);
  if (!image) return null;
  const num = (name) => Number(image.getAttribute(name));
  return {href: image.getAttribute('href'), x: num('x'), y: num('y'), width: num('width'), height: num('height'),
          opacity: Number(getComputedStyle(image).opacity),
          viewBox: document.querySelector('[data-testid=overlay]').getAttribute('viewBox')};
}"""


def drawn_pixels(drawn: dict) -> np.ndarray:
    assert drawn["href"].startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(drawn["href"].split(",", 1)[1]))).convert("RGBA"))


def png_gray(data: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))))


def test_semantic_draws_the_class_mask_and_its_legend(pixel_servers, open_page):
    ui = open_page(pixel_servers["semantic"])
    page = ui.page
    page.wait_for_selector("[data-testid=task]:text('semantic')")
    assert page.is_hidden("[data-testid=bits-field]"), "the depth control is for depth models"
    body = ui.run(lambda: page.click("[data-testid=example-bus]"))
    image = body["images"][0]
    ui.shot("semantic")
    drawn = page.evaluate(READ_PIXEL_MAP, "class-mask")
    assert drawn is not None, "the class mask is drawn over the image"
    assert (drawn["x"], drawn["y"], drawn["width"], drawn["height"]) == (0, 0, 810, 1080)
    assert drawn["viewBox"] == "0 0 810 1080"
    ids = png_gray(image["semantic_mask"]["data"])
    rgba = drawn_pixels(drawn)
    assert rgba.shape[:2] == ids.shape
    for cls in np.unique(ids):  # every pixel of a class in that class's colour
        colour = [int(v) for v in re.findall(r"\d+", palette_rgb(int(cls)))]
        assert (rgba[ids == cls] == [*colour, 255]).all(), cls
    assert drawn["opacity"] == 0.5, "blended at 0.5, as Ultralytics' plot"
    rows = page.eval_on_selector_all("[data-testid=class-row]", "rows => rows.map(r => [Number(r.dataset.class), r.dataset.name, Number(r.dataset.ratio), r.textContent])")
    assert [(c, n, ratio) for c, n, ratio, _ in rows] == [(r["class"], r["name"], r["pixel_ratio"]) for r in image["results"]]
    assert all(text.endswith(f"{ratio * 100:.1f}%") for _, _, ratio, text in rows)
    assert page.text_content("#list-title") == f"Classes ({len(image['results'])})"


def test_depth_draws_the_map_its_scale_and_sends_bits(pixel_servers, open_page):
    ui = open_page(pixel_servers["depth"])
    page = ui.page
    page.wait_for_selector("[data-testid=task]:text('depth')")
    assert page.is_visible("[data-testid=bits-field]")
    body = ui.run(lambda: page.click("[data-testid=example-bus]"))
    assert ui.form()["bits"] == "8" and body["images"][0]["depth"]["bits"] == 8
    body = ui.run(lambda: page.click("[data-bits='16']"))
    assert ui.form()["bits"] == "16"
    depth = body["images"][0]["depth"]
    assert depth["bits"] == 16
    ui.shot("depth")
    drawn = page.evaluate(READ_PIXEL_MAP, "depth-map")
    assert (drawn["x"], drawn["y"], drawn["width"], drawn["height"]) == (0, 0, 810, 1080), "stretched over the image"
    rgba = drawn_pixels(drawn)
    pixels = png_gray(depth["data"])
    assert rgba.shape[:2] == pixels.shape == tuple(depth["shape"])
    assert (rgba[..., 3] == 255).all(), "every pixel has a depth: all drawn"
    assert drawn["opacity"] == 0.6, "blended at 0.6, as Ultralytics' plot"
    nearest, farthest = np.unravel_index(pixels.argmin(), pixels.shape), np.unravel_index(pixels.argmax(), pixels.shape)
    red, blue = rgba[nearest][:3], rgba[farthest][:3]
    assert red[0] > 100 and red[2] == 0, f"nearest is red (jet), got {red}"
    assert blue[2] > 100 and blue[0] == 0, f"farthest is blue (jet), got {blue}"
    assert page.is_visible("[data-testid=depth-scale]")
    assert page.text_content("[data-testid=depth-min]") == f"{depth['min']:.3g} m"  # 3 significant digits
    assert page.text_content("[data-testid=depth-max]") == f"{depth['max']:.3g} m"
    gradient = page.eval_on_selector("[data-testid=depth-bar]", "b => getComputedStyle(b).backgroundImage")
    assert gradient.startswith("linear-gradient") and "rgb(128, 0, 0)" in gradient and "rgb(0, 0, 128)" in gradient


def test_a_tracked_video_plays_with_ids_trails_and_counts(servers, open_page, tmp_path, bus_jpg):
    """A video goes with track=true; as it plays, each box carries its id and a trail of its last positions, and the
    list shows each track and the counts, as the answer has them."""
    from test_tracking import pan_video

    video = tmp_path / "pan.webm"
    pan_video(video, bus_jpg, 16)
    ui = open_page(servers["detect"])
    ui.enter_key(KEY)
    body = ui.run(lambda: ui.page.set_input_files("[data-testid=file]", str(video)))
    form = ui.form()
    assert form["track"] == "true" and form["tracker"] == "bytetrack" and form["file"][2] == video.read_bytes()
    tracks = body["metadata"]["tracks"]
    assert tracks, "the detect model tracks the people in the pan"
    listed = ui.page.eval_on_selector_all("[data-testid=track-row]", "rows => rows.map((r) => r.textContent)")
    assert listed == [f"#{t['track_id']} {t['name']}frames {t['first_frame']}–{t['last_frame']}" for t in tracks]
    counts = ui.page.eval_on_selector_all("[data-testid=track-count]", "rows => rows.map((r) => [r.dataset.name, Number(r.dataset.count)])")
    assert dict(counts) == body["metadata"]["counts"]

    # The last frame, paused: its boxes with their ids, and a trail for each track seen in earlier frames too.
    last = body["images"][-1]
    ui.page.evaluate(f"() => {{ const v = document.querySelector('[data-testid=video]'); v.pause(); v.currentTime = {last['timestamp']}; }}")
    tracked = [row for row in last["results"] if "track_id" in row]
    expected_labels = [f"#{row['track_id']} {row['name']} {row['confidence']:.2f}" for row in last["results"] if "track_id" in row]
    ui.page.wait_for_function("(n) => document.querySelectorAll('[data-testid=trail]').length === n", arg=len(tracked), timeout=30_000)
    drawn = ui.overlay()
    assert [label for label in drawn["labels"] if label.startswith("#")] == expected_labels
    trails = ui.page.eval_on_selector_all("[data-testid=trail]", "lines => lines.map((l) => [Number(l.dataset.trackId), Number(l.dataset.points)])")
    seen_in = {row["track_id"]: sum(1 for image in body["images"] for r in image["results"] if r.get("track_id") == row["track_id"]) for row in tracked}
    assert dict(trails) == seen_in
    ui.shot("tracked-video")
    ui.close()


def test_live_streams_the_webcam_and_keeps_each_persons_id(servers, open_page):
    """Live mode: the (fake) webcam, panning across zidane.jpg, goes frame by frame over GET /stream with track=true;
    each answer is drawn over the live picture with ids and trails, and each person keeps one id."""
    ui = open_page(servers["detect"])
    page = ui.page
    ui.enter_key(KEY)
    answers, sockets = [], []

    def watch(socket):
        sockets.append(socket.url)
        socket.on("framereceived", lambda payload: answers.append(json.loads(payload)))

    page.on("websocket", watch)
    page.click("[data-testid=live]")
    page.wait_for_function("() => Number(document.querySelector('[data-testid=status]').dataset.frame) >= 20", timeout=180_000)
    drawn = ui.overlay()
    trails = page.eval_on_selector_all("[data-testid=trail]", "lines => lines.length")
    status = page.text_content("[data-testid=status]")
    ui.shot("live")
    page.click("[data-testid=live]")  # stop
    page.wait_for_function("() => document.body.dataset.state === 'idle'")

    assert len(sockets) == 1 and "/stream?" in sockets[0] and "track=true" in sockets[0]
    assert [a["frame"] for a in answers[:21]] == list(range(21)), "lockstep: every frame answered, in order"
    assert all(a["dropped"] == 0 and "error" not in a for a in answers)
    assert re.search(r"Live · [0-9.]+ frames/s · 0 dropped", status)
    assert any(label.startswith("#") for label in drawn["labels"]) and trails > 0
    people = max(sum(1 for row in a["results"] if "track_id" in row) for a in answers)
    ids = {row["track_id"] for a in answers for row in a["results"] if "track_id" in row}
    assert people >= 1 and len(ids) <= people + 1, f"ids {sorted(ids)} for {people} people: ids did not hold"
    ui.close()


# ---- slicing -------------------------------------------------------------------------------------------------------


def test_the_slicing_control_sends_slice_size_and_shows_the_tiles(servers, open_page):
    from sahi.slicing import get_slice_bboxes

    ui = open_page(servers["detect"])
    page = ui.page
    ui.enter_key(KEY)
    page.wait_for_selector("[data-testid=slice-field]:visible")
    assert page.get_attribute("[data-slice='0']", "aria-pressed") == "true", "off until asked"
    whole = ui.run(lambda: page.click("[data-testid=example-bus]"))
    assert "slice_size" not in ui.form() and "slices" not in whole["metadata"]

    body = ui.run(lambda: page.click("[data-slice='320']"))
    assert ui.form()["slice_size"] == "320"
    tiles = len(get_slice_bboxes(1080, 810, 320, 320, False, 0.2, 0.2))
    assert body["metadata"]["slices"] == tiles
    assert f"· {tiles} tiles ·" in page.text_content("[data-testid=status]")
    assert_boxes_match(ui.overlay(), body["images"][0]["results"])
    assert '-F "slice_size=320"' in page.text_content("[data-testid=curl]")
    assert "&slice_size=320" in page.text_content("[data-testid=curl-roboflow]")
    ui.shot("detect-sliced")

    ui.run(lambda: page.click("[data-slice='0']"))
    assert "slice_size" not in ui.form()


def test_the_slicing_control_is_hidden_for_tasks_that_cannot_be_sliced(servers, open_page):
    ui = open_page(servers["pose"])
    page = ui.page
    page.wait_for_selector("[data-testid=task]:text('pose')")
    assert not page.is_visible("[data-testid=slice-field]")
    ui.run(lambda: page.click("[data-testid=example-bus]"))
    assert "slice_size" not in ui.form()
