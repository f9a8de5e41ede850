// The Predict page: an image (upload, example or webcam frame) or a video goes to this endpoint's POST /predict, the
// same API apps call; the response is drawn as SVG over the image, or over the playing video frame by frame (a video is
// tracked: ids and trails, tracks.js). Live mode sends the webcam's frames over GET stream, a WebSocket, and draws each
// answer over the live picture. No dependencies, and nothing is fetched from elsewhere.
"use strict";

// Ultralytics' default palette, indexed by class id: ultralytics/utils/plotting.py, Colors.__init__ `hexs`.
const PALETTE = [
  "#042AFF", "#0BDBEB", "#F3F3F3", "#00DFB7", "#111F68", "#FF6FDD", "#FF444F", "#CCED00", "#00F344", "#BD00FF",
  "#00B4FF", "#DD00BA", "#00FFFF", "#26C000", "#01FFB3", "#7D24FF", "#7B0068", "#FF1B6C", "#FC6D2F", "#A2FF0B",
];
// Pose, from the same file: Colors.pose_palette, Annotator.__init__ skeleton (1-based COCO keypoint pairs),
// limb_color and kpt_color (indices into pose_palette), and Annotator.kpts' default conf_thres. Ultralytics draws
// these triples with OpenCV on a BGR image, so on screen each one is (blue, green, red): see poseColor().
const POSE_PALETTE = [
  [255, 128, 0], [255, 153, 51], [255, 178, 102], [230, 230, 0], [255, 153, 255], [153, 204, 255], [255, 102, 255],
  [255, 51, 255], [102, 178, 255], [51, 153, 255], [255, 153, 153], [255, 102, 102], [255, 51, 51], [153, 255, 153],
  [102, 255, 102], [51, 255, 51], [0, 255, 0], [0, 0, 255], [255, 0, 0], [255, 255, 255],
];
const SKELETON = [
  [16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8], [7, 9], [8, 10], [9, 11],
  [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7],
];
const LIMB_COLOR = [9, 9, 9, 9, 7, 7, 7, 0, 0, 0, 0, 0, 16, 16, 16, 16, 16, 16, 16];
const KPT_COLOR = [16, 16, 16, 16, 16, 0, 0, 0, 0, 0, 0, 9, 9, 9, 9, 9, 9];
const KPT_CONF = 0.25;

const DEBOUNCE_MS = 500;
const KEY_STORAGE = "yolo-endpoint.api-key";
const MAX_AUTO_RETRIES = 3; // 429: the page retries after Retry-After this many times, then leaves it to the user
const SVG_NS = "http://www.w3.org/2000/svg";
// The server does not expose MAX_UPLOAD_MB; the page shows and enforces the default, 10 MB (see index.html).
const MAX_UPLOAD_MB = Number(document.body.dataset.maxUploadMb) || 10;
const MAX_VIDEO_MB = Number(document.body.dataset.maxVideoMb) || 100; // MAX_VIDEO_MB's default likewise
const VIDEO_FILE = /\.(mp4|mov|m4v|webm|mkv|avi|mpe?g|ts|wmv|asf|flv)$/i;

const $ = (id) => document.getElementById(id);
const el = {
  model: $("model"), key: $("api-key"), drop: $("dropzone"), file: $("file"), webcam: $("webcam"),
  conf: $("conf"), confValue: $("conf-value"), iou: $("iou"), iouValue: $("iou-value"),
  sizes: [...document.querySelectorAll("[data-imgsz]")], curl: $("curl"), curlHub: $("curl-hub"),
  curlRoboflow: $("curl-roboflow"),
  error: $("error"), errorText: $("error-text"), retry: $("retry"), status: $("status"),
  frame: $("frame"), preview: $("preview"), video: $("video"), overlay: $("overlay"), hint: $("hint"),
  listTitle: $("list-title"), detections: $("detections"), top5: $("top5"), speed: $("speed"), json: $("json"),
  bitsField: $("bits-field"), bits: [...document.querySelectorAll("[data-bits]")], depthScale: $("depth-scale"),
  depthBar: $("depth-bar"), track: $("track"), tracker: $("tracker"), live: $("live"),
};

const state = {
  image: null, // {blob, name, source, url, video}: video is true for a video file
  imgsz: 640,
  bits: 8, // depth models: the depth map's PNG precision
  task: null, // from readyz
  seq: 0, // every request gets the next number; a response whose number is not the latest is dropped
  controller: null,
  timer: null, // the parameter debounce
  retryTimer: null, // 429: the next automatic attempt
  retries: 0,
  rerunWhenReady: null, // 503: the request number to run again once readyz says ready
  last: null, // {body, roundTripMs}: the latest response drawn
  stream: null, // the webcam's MediaStream
  live: null, // Live mode: {socket, answers (the last TRAIL_FRAMES answered frames), dropped, times, canvas}
  examples: new Map(), // url -> Promise<Blob>, started at page load
  severalModels: false, // readyz counts more than one model (MODELS): the page offers a model picker
};

// ---- small helpers ---------------------------------------------------------------------------------------------

const classColor = (cls) => PALETTE[((Number(cls) % PALETTE.length) + PALETTE.length) % PALETTE.length];
const poseColor = ([b, g, r]) => `rgb(${r}, ${g}, ${b})`;
const fmtMs = (ms) => (Number.isFinite(ms) ? `${ms.toFixed(1)} ms` : "–");
const fmtConf = (c) => Number(c).toFixed(2);

function textColorOn(hex) {
  const n = parseInt(hex.slice(1), 16);
  const luma = 0.299 * (n >> 16) + 0.587 * ((n >> 8) & 255) + 0.114 * (n & 255);
  return luma > 150 ? "#111111" : "#ffffff";
}

function svg(name, attrs = {}, parent = null) {
  const node = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (parent) parent.appendChild(node);
  return node;
}

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "style") Object.assign(node.style, v);
    else node.setAttribute(k, String(v));
  }
  node.append(...children);
  return node;
}

function params() {
  const p = { conf: Number(el.conf.value).toFixed(2), iou: Number(el.iou.value).toFixed(2), imgsz: String(state.imgsz) };
  if (state.task === "depth") p.bits = String(state.bits);
  return withSlicing(p);
}

function setState(name) {
  document.body.dataset.state = name;
}

// ---- API key ---------------------------------------------------------------------------------------------------

function apiKey() {
  return el.key.value.trim();
}

el.key.value = sessionStorage.getItem(KEY_STORAGE) || "";
el.key.addEventListener("input", () => {
  if (apiKey()) sessionStorage.setItem(KEY_STORAGE, apiKey());
  else sessionStorage.removeItem(KEY_STORAGE);
  updateCurl();
  schedule(); // a corrected key re-runs the current image, debounced like any parameter
});
el.key.addEventListener("change", () => {
  if (state.severalModels) listModels();
});

// ---- the model picker (an endpoint with several models, which readyz counts; GET models takes the key) --------

const picker = $("model-picker");

async function listModels() {
  try {
    const headers = apiKey() ? { Authorization: `Bearer ${apiKey()}` } : {};
    const response = await fetch("models", { headers, cache: "no-store" });
    const models = response.ok ? (await response.json()).models : [];
    if (models.length < 2) return;
    const chosen = picker.value;
    picker.replaceChildren(...models.map((m) => h("option", { value: m.default ? "" : m.id },
      `${m.id}${m.task ? ` (${m.task})` : ""}${m.default ? " · default" : ""}`)));
    picker.value = models.some((m) => !m.default && m.id === chosen) ? chosen : "";
    $("model-pick").hidden = false;
  } catch {
    // one model, or no key yet: no picker
  }
}

picker.addEventListener("change", () => {
  updateCurl();
  if (state.image) runNow();
});

// The default model is POST predict; another is the Platform's POST api/models/{id}/predict.
const predictPath = () => (picker.value ? `api/models/${encodeURIComponent(picker.value)}/predict` : "predict");

// Enter in the key field runs the current image at once instead of submitting anywhere.
$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  if (state.image) runNow();
});

// ---- model status (GET readyz: no key needed) ------------------------------------------------------------------

let readyPoll = null;

// Shows the model and task; while the model loads, asks again every 2 s. After a 503 from predict, the image
// runs again once the model is ready, unless something newer has run meanwhile.
async function checkModel(delayMs = 0) {
  clearTimeout(readyPoll);
  if (delayMs) {
    readyPoll = setTimeout(checkModel, delayMs);
    return;
  }
  try {
    const response = await fetch("readyz", { cache: "no-store" });
    const body = await response.json().catch(() => ({}));
    if (response.ok) {
      el.model.replaceChildren("Model ", h("b", {}, body.model || "?"), " · task ", h("b", { "data-testid": "task" }, body.task || "?"));
      state.task = body.task || null;
      el.bitsField.hidden = state.task !== "depth";
      showSlicing();
      updateCurl();
      state.severalModels = body.models > 1;
      if (state.severalModels) listModels();
      const pending = state.rerunWhenReady;
      state.rerunWhenReady = null;
      if (pending !== null && pending === state.seq) runNow({ retry: true });
      return;
    }
    el.model.replaceChildren(h("span", { class: "loading" }, "The model is loading…"));
  } catch {
    el.model.replaceChildren(h("span", { class: "loading" }, "The endpoint cannot be reached"));
  }
  readyPoll = setTimeout(checkModel, 2000);
}

// ---- choosing an image -----------------------------------------------------------------------------------------

function setImage(blob, name, source) {
  const video = blob.type.startsWith("video/") || VIDEO_FILE.test(name);
  const limit = video ? MAX_VIDEO_MB : MAX_UPLOAD_MB;
  if (blob.size > limit * 1024 * 1024) {
    const mb = (blob.size / 1024 / 1024).toFixed(1);
    showError(`${name} is ${mb} MB, over the ${limit} MB upload limit. Choose a smaller ${video ? "video" : "image"}.`, { retry: false });
    return;
  }
  stopLive();
  stopWebcam();
  if (state.image) URL.revokeObjectURL(state.image.url);
  state.image = { blob, name, source, url: URL.createObjectURL(blob), video };
  state.last = null;
  clearResults();
  for (const card of document.querySelectorAll(".card")) card.classList.remove("active");
  if (source === "webcam") el.webcam.classList.add("active");
  document.querySelector(`.example[data-name="${CSS.escape(name)}"]`)?.classList.toggle("active", source === "example");
  el.frame.classList.remove("empty", "live", "no-preview");
  el.frame.classList.toggle("restartable", source === "webcam");
  setFrameAction(source === "webcam" ? "Captured frame: click or press Enter to restart the webcam" : null);
  showHint(source === "webcam" ? "Click the image to restart the webcam." : "");
  if (video) {
    el.preview.hidden = true;
    el.preview.removeAttribute("src");
    Object.assign(el.video, { src: state.image.url, controls: true, loop: true, hidden: false });
    el.video.play().catch(() => {});
  } else {
    closeVideo();
    el.preview.hidden = false;
    el.preview.src = state.image.url;
  }
  runNow();
  if (matchMedia("(max-width: 820px)").matches) el.frame.scrollIntoView({ block: "nearest" }); // phones: show the result
}

el.preview.addEventListener("load", () => {
  setFrameSize(el.preview.naturalWidth, el.preview.naturalHeight);
  drawOverlay();
});
el.preview.addEventListener("error", () => {
  if (!state.image) return;
  // HEIC, TIFF, DNG... the server decodes them but this browser cannot show them: draw on a blank frame instead.
  el.preview.hidden = true;
  el.frame.classList.add("no-preview");
  showHint(`This browser cannot preview ${state.image.name}; the endpoint may still read it (HEIC, TIFF, DNG…), and results are drawn on a blank frame.`);
});

// An uploaded video leaves the stage (another image, the webcam).
function closeVideo() {
  el.video.pause();
  el.video.removeAttribute("src");
  el.video.controls = false;
  el.video.hidden = true;
  el.video.load();
}

function setFrameSize(width, height) {
  if (!width || !height) return;
  el.frame.style.setProperty("--w", width);
  el.frame.style.setProperty("--h", height);
}

el.drop.addEventListener("click", () => el.file.click());
el.file.addEventListener("change", () => {
  const file = el.file.files[0];
  if (file) setImage(file, file.name, "upload");
  el.file.value = ""; // choosing the same file again still triggers a run
});

for (const target of [el.drop, el.frame]) {
  target.addEventListener("dragover", (event) => {
    event.preventDefault();
    el.drop.classList.add("dragging");
  });
  target.addEventListener("dragleave", () => el.drop.classList.remove("dragging"));
  target.addEventListener("drop", (event) => {
    event.preventDefault();
    el.drop.classList.remove("dragging");
    const file = [...(event.dataTransfer?.files || [])][0];
    if (file) setImage(file, file.name, "upload");
  });
}
// A file dropped anywhere else must not make the browser navigate away from the page.
window.addEventListener("dragover", (event) => event.preventDefault());
window.addEventListener("drop", (event) => event.preventDefault());

// Examples are fetched once at page load, so a click runs inference at once.
// The thumbnails show the same blobs: one download per example.
for (const button of document.querySelectorAll(".example")) {
  const url = button.dataset.src;
  const blob = fetch(url).then((r) => (r.ok ? r.blob() : Promise.reject(new Error(`HTTP ${r.status}`))));
  blob.then((b) => (button.querySelector("img").src = URL.createObjectURL(b)), () => {}); // a failure is reported on click
  state.examples.set(url, blob);
  button.addEventListener("click", async () => {
    try {
      setImage(await state.examples.get(url), button.dataset.name, "example");
    } catch (error) {
      showError(`The example ${button.dataset.name} could not be loaded (${error.message}).`, { retry: false });
    }
  });
}

// ---- webcam ----------------------------------------------------------------------------------------------------

async function startWebcam() {
  stopLive();
  stopWebcam();
  closeVideo();
  if (!navigator.mediaDevices?.getUserMedia) {
    showError("The webcam needs a secure page (https or localhost) and a browser with camera support.", { retry: false });
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 1280 }, height: { ideal: 720 } }, audio: false });
  } catch (error) {
    const why = error.name === "NotAllowedError" ? "camera permission was denied" : error.name === "NotFoundError" ? "no camera was found" : error.message || error.name;
    showError(`The webcam could not start: ${why}.`, { retry: false });
    return;
  }
  state.stream = stream;
  // The live preview replaces the current image: nothing pending for it may run or draw.
  clearTimeout(state.timer);
  clearTimeout(state.retryTimer);
  state.controller?.abort();
  state.seq += 1;
  if (state.image) URL.revokeObjectURL(state.image.url);
  state.image = null;
  state.last = null;
  clearResults();
  setState("idle");
  el.status.textContent = "";
  hideError();
  for (const card of document.querySelectorAll(".card")) card.classList.remove("active");
  el.webcam.classList.add("active");
  el.video.srcObject = stream;
  await el.video.play().catch(() => {});
  setFrameSize(el.video.videoWidth || 640, el.video.videoHeight || 480);
  el.frame.classList.remove("empty", "no-preview", "restartable");
  el.frame.classList.add("live");
  setFrameAction(null); // the <video> itself takes the focus and the Enter key
  el.preview.hidden = true;
  el.video.hidden = false;
  el.overlay.replaceChildren();
  showHint("Click the preview (or press Enter) to capture a frame.");
  el.video.focus({ preventScroll: true });
}

function stopWebcam() {
  if (!state.stream) return;
  for (const track of state.stream.getTracks()) track.stop();
  state.stream = null;
  el.video.srcObject = null;
  el.frame.classList.remove("live");
}

function captureFrame() {
  const { videoWidth: width, videoHeight: height } = el.video;
  if (!state.stream || !width) return;
  const canvas = h("canvas", { width, height });
  canvas.getContext("2d").drawImage(el.video, 0, 0, width, height);
  canvas.toBlob((blob) => blob && setImage(new File([blob], "webcam.jpg", { type: "image/jpeg" }), "webcam.jpg", "webcam"), "image/jpeg", 0.92);
}

// The captured frame acts as a button (restart the webcam); otherwise the frame is just a picture.
function setFrameAction(label) {
  for (const [name, value] of [["role", "button"], ["tabindex", "0"], ["aria-label", label]]) {
    if (label) el.frame.setAttribute(name, value);
    else el.frame.removeAttribute(name);
  }
}

function stageAction() {
  if (state.live) stopLive();
  else if (state.stream) captureFrame();
  else if (state.image?.source === "webcam") startWebcam();
}

el.webcam.addEventListener("click", startWebcam);
el.live.addEventListener("click", () => (state.live ? stopLive() : startLive()));

// ---- live: the webcam's frames over GET stream (docs/streams.md), one at a time, tracked ---------------------------

// The stream of the model the page runs: the default's, or another's at api/models/{id}/stream.
const streamPath = () => (picker.value ? `api/models/${encodeURIComponent(picker.value)}/stream` : "stream");

async function startLive() {
  stopLive();
  await startWebcam();
  if (!state.stream) return; // no camera: startWebcam said why
  el.webcam.classList.remove("active");
  el.live.classList.add("active");
  el.live.setAttribute("aria-pressed", "true");
  const url = new URL(streamPath(), location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  for (const [k, v] of Object.entries(params())) if (k !== "bits") url.searchParams.set(k, v);
  url.searchParams.set("track", String(el.track.checked));
  url.searchParams.set("tracker", el.tracker.value);
  if (apiKey()) url.searchParams.set("api_key", apiKey()); // a browser cannot set headers on a WebSocket
  const live = (state.live = { socket: new WebSocket(url), answers: [], dropped: 0, times: [], canvas: h("canvas"), opened: false });
  live.socket.onopen = () => {
    live.opened = true;
    sendLiveFrame(live);
  };
  live.socket.onmessage = (event) => onLiveAnswer(live, JSON.parse(event.data));
  live.socket.onclose = (event) => onLiveClosed(live, event);
  showHint("Live: each webcam frame goes to the endpoint as soon as the previous one is answered. Click the picture or Live to stop.");
  el.status.textContent = "Live: connecting…";
  setState("running");
}

// Lockstep: the next frame leaves once the previous one is answered, so the picture is never more than one answer old.
function sendLiveFrame(live) {
  if (state.live !== live || live.socket.readyState !== WebSocket.OPEN) return;
  const { videoWidth: width, videoHeight: height } = el.video;
  if (!width) {
    requestAnimationFrame(() => sendLiveFrame(live));
    return;
  }
  Object.assign(live.canvas, { width, height });
  live.canvas.getContext("2d").drawImage(el.video, 0, 0, width, height);
  live.canvas.toBlob((jpeg) => jpeg && state.live === live && live.socket.readyState === WebSocket.OPEN && live.socket.send(jpeg), "image/jpeg", 0.85);
}

function onLiveAnswer(live, answer) {
  if (state.live !== live) return;
  const now = performance.now();
  live.times = [...live.times.filter((t) => now - t < 2000), now];
  live.dropped += answer.dropped || 0;
  if (answer.error) {
    el.status.textContent = `Live: frame ${answer.frame} was refused (${answer.error.code}): ${answer.error.message}`;
  } else {
    live.answers = [...live.answers, answer].slice(-TRAIL_FRAMES);
    setFrameSize(answer.shape[1], answer.shape[0]);
    drawOverlay();
    el.detections.replaceChildren();
    renderDetections(answer.results || []);
    const fps = live.times.length > 1 ? (live.times.length - 1) / ((now - live.times[0]) / 1000) : 0;
    el.status.textContent = `Live · ${fps.toFixed(1)} frames/s · ${live.dropped} dropped · frame ${answer.frame}`;
    Object.assign(el.status.dataset, { fps: fps.toFixed(2), dropped: live.dropped, frame: answer.frame });
    showSpeed(answer.speed || {}, NaN); // a stream's answer carries no server time to take from the round trip
    el.json.textContent = JSON.stringify(answer, null, 2);
    setState("live");
  }
  sendLiveFrame(live);
}

function onLiveClosed(live, event) {
  if (state.live !== live) return;
  const why = !live.opened ? "the stream could not open: check the API key and the parameters (the endpoint refused it or cannot be reached)"
    : event.code === 1001 ? "the endpoint is restarting: click Live to reconnect"
    : event.code === 1000 ? `the stream was closed (${event.reason || "idle"})`
    : `the stream closed (${event.code}${event.reason ? `: ${event.reason}` : ""})`;
  stopLive();
  showError(`Live: ${why}.`, { retry: false });
}

function stopLive() {
  const live = state.live;
  if (!live) return;
  state.live = null;
  if (live.socket.readyState <= WebSocket.OPEN) live.socket.close(1000, "the page stopped the stream");
  el.live.classList.remove("active");
  el.live.setAttribute("aria-pressed", "false");
  stopWebcam();
  el.video.hidden = true;
  el.overlay.replaceChildren();
  showHint("");
  setState("idle");
}
el.video.addEventListener("loadedmetadata", () => setFrameSize(el.video.videoWidth, el.video.videoHeight));
el.frame.addEventListener("click", stageAction);
el.frame.addEventListener("keydown", (event) => {
  if (event.key === "Enter" || event.key === " ") {
    event.preventDefault();
    stageAction();
  }
});

// ---- parameters ------------------------------------------------------------------------------------------------

el.conf.addEventListener("input", () => {
  el.confValue.value = fmtConf(el.conf.value);
  updateCurl();
  schedule();
});
el.iou.addEventListener("input", () => {
  el.iouValue.value = fmtConf(el.iou.value);
  updateCurl();
  schedule();
});
// A row of toggle buttons (`data-KEY="value"`): a click picks its value, shows it pressed and runs again.
function toggleGroup(buttons, key, get, set) {
  for (const button of buttons) {
    button.addEventListener("click", () => {
      const value = Number(button.dataset[key]);
      if (get() === value) return;
      set(value);
      for (const b of buttons) b.setAttribute("aria-pressed", String(b === button));
      updateCurl();
      schedule();
    });
  }
}
toggleGroup(el.sizes, "imgsz", () => state.imgsz, (value) => (state.imgsz = value));
toggleGroup(el.bits, "bits", () => state.bits, (value) => (state.bits = value));

// Tracking applies to videos and Live: a change runs the video again, or restarts the stream.
for (const control of [el.track, el.tracker]) {
  control.addEventListener("change", () => (state.image?.video || state.live) && schedule());
}

// ---- slicing: small objects in large images (docs/calling.md) ----------------------------------------------------

// Tasks the server slices; for the others the control is hidden and nothing is sent.
const SLICEABLE = ["detect", "segment", "obb"];
const slicing = { size: 0, field: $("slice-field"), buttons: [...document.querySelectorAll("[data-slice]")] };

// Images only: the server refuses slice_size with a video, and Live's frames are not sliced.
function withSlicing(p) {
  const live = el.live.getAttribute("aria-pressed") === "true";
  if (slicing.size && SLICEABLE.includes(state.task) && !state.image?.video && !live) p.slice_size = String(slicing.size);
  return p;
}

function showSlicing() {
  slicing.field.hidden = !SLICEABLE.includes(state.task);
}

toggleGroup(slicing.buttons, "slice", () => slicing.size, (value) => (slicing.size = value));

// The model id the HUB and Roboflow URLs carry: MODEL_ID when the server has one, else any id works (the registry
// names one); read once from GET model/registry, which needs no key.
let snippetModelId = "MODEL_ID";
fetch("model/registry", { cache: "no-store" })
  .then((r) => (r.ok ? r.json() : null))
  .then((registry) => {
    if (registry?.models?.[0]?.model_id) snippetModelId = registry.models[0].model_id;
    updateCurl();
  })
  .catch(() => {});

// The same request in each client's own form: the Platform's, HUB v1's (seed 000) and Roboflow's (seed 004).
function updateCurl() {
  const p = params();
  const base = new URL(".", location.href).href;
  const key = Boolean(apiKey());
  const bearer = key ? ` \\\n  -H "Authorization: Bearer $API_KEY"` : "";
  const bits = p.bits ? ` -F "bits=${p.bits}"` : "";
  const slice = p.slice_size ? ` -F "slice_size=${p.slice_size}"` : "";
  el.curl.textContent = `curl -X POST "${base}${predictPath()}"${bearer} \\\n  -F "file=@image.jpg" -F "conf=${p.conf}" -F "iou=${p.iou}" -F "imgsz=${p.imgsz}"${bits}${slice}`;
  const xApiKey = key ? ` \\\n  -H "x-api-key: $API_KEY"` : "";
  const modelId = picker.value || snippetModelId;
  el.curlHub.textContent = `curl -X POST "${base}v1/predict/${modelId}"${xApiKey} \\\n  -F "image=@image.jpg" -F "size=${p.imgsz}" -F "confidence=${p.conf}" -F "iou=${p.iou}"${slice}`;
  const query = `${key ? "api_key=$API_KEY&" : ""}confidence=${Math.round(p.conf * 100)}&overlap=${Math.round(p.iou * 100)}`
    + (p.slice_size ? `&slice_size=${p.slice_size}` : "");
  el.curlRoboflow.textContent = `base64 image.jpg | curl -d @- \\\n  "${base}${modelId}/1?${query}"`;
}

// ---- running inference -----------------------------------------------------------------------------------------

// Parameter changes wait DEBOUNCE_MS of quiet, so a burst of changes costs one request.
function schedule() {
  clearTimeout(state.timer);
  if (state.live) state.timer = setTimeout(startLive, DEBOUNCE_MS); // new parameters: a new stream
  else if (state.image) state.timer = setTimeout(runNow, DEBOUNCE_MS);
}

async function runNow({ retry = false } = {}) {
  clearTimeout(state.timer);
  clearTimeout(state.retryTimer);
  if (!state.image) return;
  if (!retry) state.retries = 0;
  const seq = ++state.seq;
  state.controller?.abort();
  const controller = (state.controller = new AbortController());

  const form = new FormData();
  form.append("file", state.image.blob, state.image.name);
  const p = params();
  for (const [k, v] of Object.entries(p)) form.append(k, v);
  if (state.image.video && el.track.checked) {
    form.append("track", "true");
    form.append("tracker", el.tracker.value);
  }
  const headers = apiKey() ? { Authorization: `Bearer ${apiKey()}` } : {};

  setState("running");
  hideError();
  el.status.textContent = `Running inference on ${state.image.name} (conf ${p.conf}, IoU ${p.iou}, size ${p.imgsz})…`;
  const started = performance.now();
  let response, text;
  try {
    response = await fetch(predictPath(), { method: "POST", body: form, headers, signal: controller.signal, cache: "no-store" });
    text = await response.text();
  } catch (error) {
    if (error.name === "AbortError" || seq !== state.seq) return; // superseded by a newer request
    showError(`Could not reach the endpoint (${error.message}). Check your connection and retry.`);
    return;
  }
  const roundTripMs = performance.now() - started;
  if (seq !== state.seq) return; // a stale response never overwrites a newer one
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    body = null;
  }
  if (!response.ok || !body?.images?.[0]) {
    handleHttpError(response, body, text);
    return;
  }
  let map = null;
  try {
    map = state.image.video ? null : await pixelMap(body.images[0]); // decoded before anything is drawn: one complete rendering
  } catch (error) {
    showError(`The ${body.images[0].depth ? "depth map" : "class mask"} could not be drawn (${error.message}).`, { retry: false });
    return;
  }
  if (seq !== state.seq) return;
  state.last = { body, roundTripMs, map };
  render();
}

function handleHttpError(response, body, text) {
  const status = response.status;
  const message = body?.error?.message || text.trim().slice(0, 300) || response.statusText || "no details";
  const retryAfter = Math.min(Math.max(Number(response.headers.get("Retry-After")) || 1, 1), 30);
  el.json.textContent = body ? JSON.stringify(body, null, 2) : text;
  let readable;
  switch (status) {
    case 400:
      readable = `The request was refused (400): ${message}`;
      break;
    case 401:
      readable = `This endpoint needs a valid API key (401 Unauthorized). Enter it in the API key field; the image then runs again by itself.`;
      el.key.focus();
      break;
    case 413:
      readable = `The image is too large for this endpoint (413): ${message}`;
      break;
    case 415:
      readable = `Not a supported image (415): ${message}`;
      break;
    case 429:
      if (state.retries < MAX_AUTO_RETRIES) {
        state.retries += 1;
        readable = `The endpoint is busy (429). Retrying in ${retryAfter} s (attempt ${state.retries} of ${MAX_AUTO_RETRIES})…`;
        const seq = state.seq;
        state.retryTimer = setTimeout(() => seq === state.seq && runNow({ retry: true }), retryAfter * 1000);
      } else {
        readable = `The endpoint is busy (429): ${message}. Try again in a moment.`;
      }
      break;
    case 503:
      readable = `The model is still loading (503). The page will run your image as soon as it is ready.`;
      state.rerunWhenReady = state.seq;
      el.model.replaceChildren(h("span", { class: "loading" }, "The model is loading…"));
      checkModel(retryAfter * 1000);
      break;
    case 504:
      readable = `Inference timed out (504): ${message}`;
      break;
    default:
      readable = `The endpoint answered ${status} ${body?.error?.status || response.statusText}: ${message}`;
  }
  showError(readable, { retry: status !== 413 && status !== 415, status });
}

// ---- results ---------------------------------------------------------------------------------------------------

function clearResults() {
  el.overlay.replaceChildren();
  el.detections.replaceChildren();
  el.top5.replaceChildren();
  el.top5.hidden = true;
  el.detections.hidden = false;
  el.depthScale.hidden = true;
  el.listTitle.textContent = "Detections";
  for (const dd of el.speed.querySelectorAll("dd")) dd.textContent = "–";
  el.json.textContent = "";
}

function render() {
  const { body, roundTripMs } = state.last;
  if (state.image.video) {
    renderVideo(body, roundTripMs);
    return;
  }
  const image = body.images[0];
  const results = image.results || [];
  const [height, width] = image.shape;
  if (el.preview.hidden || !el.preview.naturalWidth) setFrameSize(width, height);
  clearResults();
  drawOverlay();

  const classify = results.length > 0 && results.every((r) => !r.box) && !image.semantic_mask;
  if (image.semantic_mask) renderClasses(results);
  else if (image.depth) renderDepthScale(image.depth);
  else if (classify) renderTop5(results);
  else renderDetections(results);

  showSpeed(image.speed || {}, networkMs(body, roundTripMs));
  // A map's base64 PNG is hundreds of KB of noise to a reader: shown shortened (the full answer is what was drawn).
  el.json.textContent = JSON.stringify(body, (k, v) => (k === "data" && typeof v === "string" && v.length > 80 ? `${v.slice(0, 60)}… (${v.length} characters)` : v), 2);

  const what = image.semantic_mask ? `${results.length} class${results.length === 1 ? "" : "es"}`
    : image.depth ? `depth ${fmtMetres(image.depth.min)} to ${fmtMetres(image.depth.max)}`
    : classify ? `top class ${results[0].name} (${fmtConf(results[0].confidence)})` : `${results.length} detection${results.length === 1 ? "" : "s"}`;
  const tiles = body.metadata?.slices ? ` · ${body.metadata.slices} tiles` : "";
  el.status.textContent = `${state.image.name}: ${what}${tiles} · ${width}×${height} · ${roundTripMs.toFixed(0)} ms round trip`;
  setState("done");
}

const SPEED_STEPS = ["preprocess", "inference", "postprocess"];

// The Speed panel: Ultralytics' steps (ms, per frame for a video: `suffix`) and the network's share of the round trip.
function showSpeed(speed, network, suffix = "") {
  for (const name of SPEED_STEPS) {
    el.speed.querySelector(`[data-testid="speed-${name}"]`).textContent = `${fmtMs(Number(speed[name]))}${suffix}`;
  }
  el.speed.querySelector('[data-testid="speed-network"]').textContent = fmtMs(network);
}

// The round trip measured here less the server's own time (functionTimeCall).
function networkMs(body, roundTripMs) {
  const serverMs = Number(body.metadata?.functionTimeCall) * 1000;
  return Math.max(0, roundTripMs - (Number.isFinite(serverMs) ? serverMs : 0));
}

// A video's answer: one entry per answered frame, drawn as the video plays; the list shows its tracks and counts.
function renderVideo(body, roundTripMs) {
  const frames = body.images;
  const [height, width] = frames[0].shape;
  setFrameSize(width, height);
  clearResults();
  drawOverlay();
  const tracks = body.metadata?.tracks;
  const counts = body.metadata?.counts || {};
  if (tracks) renderTracks(tracks, counts);
  else renderDetections(frames[Tracks.indexAt(frames, el.video.currentTime || 0)].results || []);
  const speed = Object.fromEntries(SPEED_STEPS.map((name) => [name, frames.reduce((sum, f) => sum + Number(f.speed?.[name] || 0), 0) / frames.length]));
  showSpeed(speed, networkMs(body, roundTripMs), " / frame");
  el.json.textContent = JSON.stringify(body, null, 2);
  const counted = Object.entries(counts).map(([name, n]) => `${n} ${name}`).join(", ");
  const what = tracks ? `${tracks.length} track${tracks.length === 1 ? "" : "s"}${counted ? ` (${counted})` : ""}` : "untracked";
  el.status.textContent = `${state.image.name}: ${frames.length} frames, ${what} · ${width}×${height} · ${roundTripMs.toFixed(0)} ms round trip`;
  setState("done");
}

// Each track of a tracked video: its id, class and the frames it was seen in; then the unique tracks per class.
function renderTracks(tracks, counts) {
  el.listTitle.textContent = `Tracks (${tracks.length})`;
  if (!tracks.length) {
    el.detections.append(h("li", { class: "none" }, `Nothing tracked at confidence ≥ ${params().conf}. Try a lower Confidence.`));
  }
  for (const t of tracks) {
    el.detections.append(
      h("li", { "data-testid": "track-row", "data-track-id": t.track_id, "data-class": t.class },
        h("span", { class: "swatch", style: { background: classColor(t.class) } }),
        h("span", { class: "name" }, `#${t.track_id} ${t.name}`),
        h("span", { class: "conf" }, `frames ${t.first_frame}–${t.last_frame}`)),
    );
  }
  for (const [name, n] of Object.entries(counts)) {
    el.detections.append(h("li", { class: "count", "data-testid": "track-count", "data-name": name, "data-count": n },
      h("span", { class: "name" }, `${name}`), h("span", { class: "conf" }, `${n} unique`)));
  }
}

function renderDetections(results) {
  el.listTitle.textContent = `Detections (${results.length})`;
  if (!results.length) {
    el.detections.append(h("li", { class: "none" }, `Nothing found at confidence ≥ ${params().conf}. Try a lower Confidence.`));
    return;
  }
  results.forEach((r, i) => {
    el.detections.append(
      h("li", { "data-testid": "detection-row", "data-index": i, "data-class": r.class },
        h("span", { class: "swatch", style: { background: classColor(r.class) } }),
        h("span", { class: "name" }, r.track_id === undefined ? r.name : `#${r.track_id} ${r.name}`),
        h("span", { class: "conf" }, fmtConf(r.confidence))),
    );
  });
}

// semantic: the legend, one row per class present with its share of the pixels (Results.summary()'s pixel_ratio).
function renderClasses(results) {
  el.listTitle.textContent = `Classes (${results.length})`;
  for (const r of results) {
    el.detections.append(
      h("li", { "data-testid": "class-row", "data-class": r.class, "data-name": r.name, "data-ratio": r.pixel_ratio },
        h("span", { class: "swatch", style: { background: classColor(r.class) } }),
        h("span", { class: "name" }, r.name),
        h("span", { class: "ratio" }, `${(Number(r.pixel_ratio) * 100).toFixed(1)}%`)),
    );
  }
}

// depth: the colour scale from the nearest to the farthest depth, in metres.
function renderDepthScale(depth) {
  el.listTitle.textContent = "Depth";
  el.detections.hidden = true;
  el.depthScale.hidden = false;
  const stops = Array.from({ length: 11 }, (_, i) => `rgb(${jet(1 - i / 10).join(", ")}) ${i * 10}%`);
  el.depthBar.style.background = `linear-gradient(to right, ${stops.join(", ")})`;
  el.depthScale.querySelector("[data-testid=depth-min]").textContent = fmtMetres(depth.min);
  el.depthScale.querySelector("[data-testid=depth-max]").textContent = fmtMetres(depth.max);
}

const fmtMetres = (m) => (m === null || m === undefined ? "–" : `${Number(m).toPrecision(3)} m`);

// Matplotlib's jet, as Ultralytics colours depth: t = 0 dark blue, 1 dark red.
function jet(t) {
  const c = (x) => Math.round(255 * Math.max(0, Math.min(1, 1.5 - Math.abs(4 * t - x))));
  return [c(3), c(2), c(1)];
}

// A class mask or depth map PNG from the JSON, coloured as a picture (a data: URL) to lay over the image. The PNG is
// read here, not by a canvas: a canvas keeps 8 bits of a 16-bit PNG, which would merge class ids past 255 and small
// depths with "no depth".
async function pixelMap(image) {
  const map = image.semantic_mask || image.depth;
  if (!map) return null;
  const { width, height, values } = await readGrayPng(Uint8Array.from(atob(map.data), (c) => c.charCodeAt(0)));
  const canvas = h("canvas", { width, height });
  const context = canvas.getContext("2d");
  const pixels = context.createImageData(width, height);
  const data = pixels.data;
  if (image.semantic_mask) {
    const rgb = PALETTE.map((hex) => [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16)));
    values.forEach((id, k) => data.set(id === 255 ? [0, 0, 0, 0] : [...rgb[id % rgb.length], 255], 4 * k)); // 255: excluded by `classes`
  } else {
    // As Ultralytics' plot: inverse depth spread over the colours, nearest red; 0 = no depth, left clear.
    const { min, max } = image.depth;
    const divisor = image.depth.bits === 8 ? 255 : 65535;
    const near = 1 / min, far = 1 / max;
    values.forEach((pixel, k) => {
      const t = near > far ? (divisor / (pixel * max) - far) / (near - far) : 1;
      data.set(pixel === 0 ? [0, 0, 0, 0] : [...jet(Math.max(0, Math.min(1, t))), 255], 4 * k);
    });
  }
  context.putImageData(pixels, 0, 0);
  return { kind: image.semantic_mask ? "class-mask" : "depth-map", url: canvas.toDataURL("image/png"), width, height };
}

// A non-interlaced 8- or 16-bit grayscale PNG (what the endpoint writes) -> its width, height and pixel values.
async function readGrayPng(bytes) {
  const view = new DataView(bytes.buffer);
  const chunks = [];
  let width = 0, height = 0, depth = 0;
  for (let at = 8; at < bytes.length;) {
    const length = view.getUint32(at);
    const type = String.fromCharCode(...bytes.subarray(at + 4, at + 8));
    if (type === "IHDR") {
      [width, height, depth] = [view.getUint32(at + 8), view.getUint32(at + 12), bytes[at + 16]];
      if (bytes[at + 17] !== 0 || bytes[at + 20] !== 0 || (depth !== 8 && depth !== 16)) throw new Error("not an 8- or 16-bit grayscale PNG");
    }
    if (type === "IDAT") chunks.push(bytes.subarray(at + 8, at + 8 + length));
    at += 12 + length;
  }
  const zlib = new Blob(chunks).stream().pipeThrough(new DecompressionStream("deflate"));
  const raw = new Uint8Array(await new Response(zlib).arrayBuffer());
  const bpp = depth / 8, stride = width * bpp;
  const rows = new Uint8Array(height * stride);
  for (let y = 0; y < height; y++) { // undo each scanline's filter (PNG spec, section 9)
    const filter = raw[y * (stride + 1)], line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const out = rows.subarray(y * stride, (y + 1) * stride), up = y ? rows.subarray((y - 1) * stride, y * stride) : new Uint8Array(stride);
    for (let i = 0; i < stride; i++) {
      const a = i >= bpp ? out[i - bpp] : 0, b = up[i], c = i >= bpp ? up[i - bpp] : 0;
      let predicted = 0;
      if (filter === 1) predicted = a;
      else if (filter === 2) predicted = b;
      else if (filter === 3) predicted = (a + b) >> 1;
      else if (filter === 4) {
        const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
        predicted = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      }
      out[i] = (line[i] + predicted) & 255;
    }
  }
  const values = new Uint16Array(width * height);
  for (let k = 0; k < values.length; k++) values[k] = bpp === 1 ? rows[k] : (rows[2 * k] << 8) | rows[2 * k + 1];
  return { width, height, values };
}

function renderTop5(results) {
  el.listTitle.textContent = "Top-5 classes";
  el.detections.hidden = true;
  el.top5.hidden = false;
  for (const r of results.slice(0, 5)) {
    const pct = Math.max(0, Math.min(100, Number(r.confidence) * 100));
    el.top5.append(
      h("li", { "data-testid": "top5-row", "data-class": r.class, "data-name": r.name, "data-confidence": r.confidence },
        h("div", { class: "row" }, h("span", { class: "name" }, r.name), h("span", { class: "conf" }, `${pct.toFixed(1)}%`)),
        h("div", { class: "track" }, h("span", { class: "bar", "data-testid": "top5-bar", style: { width: `${pct}%`, background: classColor(r.class) } }))),
    );
  }
}

// Image pixels per on-screen pixel, so labels and keypoints keep a readable size at any display size.
function screenScale(width, height) {
  const shown = el.overlay.getBoundingClientRect();
  return shown.width && shown.height ? Math.max(width / shown.width, height / shown.height) : 1;
}

// What is on screen: a live stream's latest answer, the playing video's answered frame, or the image's answer.
function shownFrames() {
  if (state.live) return state.live.answers.length ? { frames: state.live.answers, index: state.live.answers.length - 1, tracked: true } : null;
  if (!state.last || state.stream) return null;
  const frames = state.last.body.images;
  if (state.image?.video) return { frames, index: Tracks.indexAt(frames, el.video.currentTime || 0), tracked: true };
  return { frames, index: 0, tracked: false };
}

function drawOverlay() {
  el.overlay.replaceChildren();
  const shown = shownFrames();
  if (!shown) return;
  const { frames, index } = shown;
  const image = frames[index];
  const [height, width] = image.shape;
  el.overlay.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const u = screenScale(width, height);
  const map = state.live ? null : state.last.map;
  if (map) {
    // Stretched over the whole image: the class mask is at the image's size, the depth map at inference resolution.
    svg("image", { class: `pixel-map ${map.kind}`, "data-testid": map.kind, href: map.url, x: 0, y: 0, width, height,
      preserveAspectRatio: "none", "data-width": map.width, "data-height": map.height }, el.overlay);
  }
  // Masks under every box, boxes under every label, as in Ultralytics' own plots; a tracked video's trails first.
  if (shown.tracked) drawTrails(Tracks.trails(frames, index), image.results || []);
  const masks = svg("g", { class: "masks" }, el.overlay);
  const shapes = svg("g", { class: "shapes" }, el.overlay);
  const labels = svg("g", { class: "labels" }, el.overlay);

  (image.results || []).forEach((r, i) => {
    if (!r.box) return; // classify: the top-5 bars say it all
    const color = classColor(r.class);
    const group = svg("g", { "data-testid": "result", "data-index": i, "data-class": r.class, "data-name": r.name, "data-confidence": r.confidence, "data-track-id": r.track_id ?? "" }, shapes);
    if (r.segments?.x?.length > 2) {
      const points = r.segments.x.map((x, k) => `${x},${r.segments.y[k]}`).join(" ");
      svg("polygon", { class: "mask", "data-testid": "mask", "data-index": i, points, fill: color, stroke: color }, masks);
    }
    let anchor;
    if ("x4" in r.box) {
      const corners = [1, 2, 3, 4].map((k) => [r.box[`x${k}`], r.box[`y${k}`]]);
      svg("polygon", { class: "obb", "data-testid": "obb", points: corners.map((c) => c.join(",")).join(" "), stroke: color }, group);
      anchor = corners.reduce((top, c) => (c[1] < top[1] ? c : top));
    } else {
      const { x1, y1, x2, y2 } = r.box;
      svg("rect", { class: "box", "data-testid": "box", x: x1, y: y1, width: x2 - x1, height: y2 - y1, stroke: color,
        "data-x1": x1, "data-y1": y1, "data-x2": x2, "data-y2": y2 }, group);
      anchor = [x1, y1];
    }
    if (r.keypoints?.x?.length) drawKeypoints(r.keypoints, group, u);
    const id = r.track_id === undefined ? "" : `#${r.track_id} `;
    drawLabel(labels, `${id}${r.name} ${fmtConf(r.confidence)}`, color, anchor, [width, height], u, i);
  });
}

// Each track's last positions, a line through its box centres in its class's colour.
function drawTrails(trails, results) {
  const layer = svg("g", { class: "trails" }, el.overlay);
  for (const r of results) {
    const points = trails[r.track_id];
    if (!points || points.length < 2) continue;
    svg("polyline", { class: "trail", "data-testid": "trail", "data-track-id": r.track_id, "data-points": points.length,
      points: points.map((p) => p.join(",")).join(" "), stroke: classColor(r.class) }, layer);
  }
}

// A video's overlay follows its playback: every frame the browser paints, or at least every timeupdate.
function followVideo() {
  if (state.image?.video && state.last) drawOverlay();
  if (el.video.requestVideoFrameCallback) el.video.requestVideoFrameCallback(followVideo);
}
el.video.addEventListener("seeked", () => state.image?.video && state.last && drawOverlay());
el.video.addEventListener("timeupdate", () => state.image?.video && state.last && drawOverlay());
if (el.video.requestVideoFrameCallback) el.video.requestVideoFrameCallback(followVideo);

function drawKeypoints(kp, group, u) {
  const visible = (k) => (kp.visible ? Number(kp.visible[k]) >= KPT_CONF : kp.x[k] !== 0 || kp.y[k] !== 0);
  const pose = kp.x.length === 17;
  if (pose) {
    SKELETON.forEach(([a, b], i) => {
      if (!visible(a - 1) || !visible(b - 1)) return;
      svg("line", { class: "limb", "data-testid": "limb", x1: kp.x[a - 1], y1: kp.y[a - 1], x2: kp.x[b - 1], y2: kp.y[b - 1],
        stroke: poseColor(POSE_PALETTE[LIMB_COLOR[i]]) }, group);
    });
  }
  kp.x.forEach((x, k) => {
    if (!visible(k)) return;
    const fill = pose ? poseColor(POSE_PALETTE[KPT_COLOR[k]]) : PALETTE[k % PALETTE.length];
    svg("circle", { class: "keypoint", "data-testid": "keypoint", "data-k": k, cx: x, cy: kp.y[k], r: 3.5 * u, fill }, group);
  });
}

// A filled tag with the class name and confidence, above the box where there is room, else just inside it;
// always inside the image.
function drawLabel(layer, text, color, [x, y], [width, height], u, index) {
  const fontSize = 12 * u;
  const pad = 4 * u;
  const tagH = fontSize + 2 * pad;
  const g = svg("g", { class: "label", "data-testid": "label", "data-index": index }, layer);
  const rect = svg("rect", { height: tagH, fill: color, rx: 2 * u }, g);
  const label = svg("text", { x: pad, y: tagH / 2, "font-size": fontSize, fill: textColorOn(color) }, g);
  label.textContent = text;
  const tagW = label.getComputedTextLength() + 2 * pad;
  rect.setAttribute("width", tagW);
  const left = Math.max(0, Math.min(x, width - tagW));
  const top = Math.max(0, Math.min(y - tagH >= 0 ? y - tagH : y, height - tagH)); // OBB corners can lie outside
  g.setAttribute("transform", `translate(${left} ${top})`);
}

// Labels and keypoints are sized in screen pixels: redraw them when the frame's size changes.
let resizeFrame = 0;
new ResizeObserver(() => {
  cancelAnimationFrame(resizeFrame);
  resizeFrame = requestAnimationFrame(drawOverlay);
}).observe(el.frame);

// ---- messages --------------------------------------------------------------------------------------------------

function showError(text, { retry = true, status = null } = {}) {
  el.errorText.textContent = text;
  el.error.dataset.status = status ?? "";
  el.retry.hidden = !retry || !state.image;
  el.error.hidden = false;
  el.status.textContent = "";
  if (status) {
    // The image stays; results from an earlier request would now be misleading.
    state.last = null;
    el.overlay.replaceChildren();
    el.detections.replaceChildren();
    el.top5.replaceChildren();
  }
  setState("error");
}

function hideError() {
  el.error.hidden = true;
  el.errorText.textContent = "";
}

function showHint(text) {
  el.hint.textContent = text;
  el.hint.hidden = !text;
}

el.retry.addEventListener("click", () => runNow());

updateCurl();
checkModel();
