"""Exported engines (ONNX Runtime, OpenVINO, TensorRT): built once by Ultralytics' own `model.export`, cached next to
the weights, checked against PyTorch before they serve.

The artefact depends on everything in `EngineSpec` (weights checksum, engine, device, runtime and Ultralytics
versions, export size, batch, precision); its name encodes all of it, so a changed input is a different name and a
stale artefact is never picked up. Where it lives:

* `MODEL=gs://bucket/path/best.pt` → `gs://bucket/path/best.pt.engines/<key><suffix>`, uploaded by the instance that
  built it (google-cloud-storage verifies CRC32C both ways), downloaded by every later cold start;
* any other MODEL → `MODEL_CACHE_DIR/engines/<key><suffix>`, reused by the next start on the same disk.

Every export is dynamic (any image size and batch up to the export batch), so Ultralytics letterboxes exactly as it
does for PyTorch and an engine can serve every request; TensorRT's profile reaches 2× the export size (1280).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import shutil
import tarfile
import tempfile
import warnings
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np

from ..errors import WeightsError
from ..logs import log
from .loaded import LoadedModel, cpu_cores, load_model
from .params import PredictParams

ENGINES = ("pytorch", "onnx", "openvino", "tensorrt")
# What `ENGINE=auto` means, per device: measured by `make bench` (docs/performance.md).
AUTO_CPU = "openvino"
AUTO_CUDA = "tensorrt"
EXPORT_IMGSZ = 640
# Ultralytics' export format, the artefact's suffix, and the distributions whose version is part of the key.
_FORMATS = {
    "onnx": ("onnx", ".onnx", ("onnxruntime", "onnxruntime-gpu")),
    "openvino": ("openvino", "_openvino_model.tar", ("openvino",)),
    "tensorrt": ("engine", ".engine", ("tensorrt", "tensorrt-cu12", "tensorrt_cu12")),
}


class EngineError(Exception):
    """An engine cannot be used; the service keeps serving with PyTorch and logs this."""


@dataclass(frozen=True)
class Tolerance:
    """How far an engine's results on the warm-up image may be from PyTorch's (measured: docs/performance.md)."""

    conf: float = 0.02  # confidence, and classification probabilities
    coords: float = 0.01  # box corners and keypoints, as a fraction of the image's longer side
    mask_iou: float = 0.9  # a segment's mask against PyTorch's
    # semantic: the fraction of pixels whose class id differs. Exported graphs take the argmax at the network's
    # resolution and upsample the ids; the .pt upsamples the logits first, so class borders move by a pixel or two
    # (measured on bus.jpg, ONNX and OpenVINO: 0.05% of the pixels); the rest must be equal.
    class_pixels: float = 0.02
    # depth: the largest difference of a pixel's depth, as a fraction of PyTorch's deepest (measured: 3e-5, ONNX).
    depth: float = 0.02


TOLERANCE = Tolerance()
# ONNX Runtime and OpenVINO (compiled in f32, fit_to_cpu) compute as PyTorch does: measured on bus.jpg and
# zidane.jpg, detect and pose, against the .pt, both within 1e-6 in confidence and 1e-6 of the image in coordinates
# (1e-3 px on a 1080 px image); the check allows float noise and nothing more. TOLERANCE stays for fp16 (TensorRT).
EXACT = Tolerance(conf=1e-4, coords=1e-6, mask_iou=0.99, class_pixels=0.01, depth=1e-3)


def tolerance_for(spec: "EngineSpec") -> Tolerance:
    return TOLERANCE if spec.precision == "fp16" else EXACT


@dataclass(frozen=True)
class EngineSpec:
    """Everything an exported artefact depends on: equal specs, interchangeable artefacts."""

    engine: str
    weights_sha256: str
    device: str  # "cpu", or the GPU's name and compute capability
    runtime: str  # e.g. "onnxruntime 1.31.1"
    ultralytics: str
    imgsz: int
    batch: int
    precision: str  # "fp32" or "fp16"
    dynamic: bool = True

    @property
    def key(self) -> str:
        digest = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]
        return f"{self.engine}-{self.precision}-{self.imgsz}-b{self.batch}-{digest}"

    @property
    def filename(self) -> str:
        return self.key + _FORMATS[self.engine][1]


def choose_engine(setting: str | None, device: str) -> str:
    """ENGINE as configured, with `auto` resolved for the device (TensorRT only where it is installed). Unset, it is
    `auto` on the CPU (OpenVINO: exact there, and faster than PyTorch in every measured round) and PyTorch on a GPU,
    where TensorRT fp16 has not been measured against PyTorch yet (docs/performance.md)."""
    if setting is None:
        setting = "pytorch" if device.startswith("cuda") else "auto"
    if setting != "auto":
        return setting
    if not device.startswith("cuda"):
        return AUTO_CPU
    try:
        runtime_version(AUTO_CUDA)
    except EngineError:
        return "pytorch"
    return AUTO_CUDA


def runtime_version(engine: str) -> str:
    for distribution in _FORMATS[engine][2]:
        try:
            return f"{distribution} {importlib.metadata.version(distribution)}"
        except importlib.metadata.PackageNotFoundError:
            continue
    raise EngineError(f"ENGINE={engine} needs {_FORMATS[engine][2][0]}, which is not installed in this image")


def device_name(device: str) -> str:
    if not device.startswith("cuda"):
        return "cpu"
    import torch

    index = int(device.partition(":")[2] or 0)
    major, minor = torch.cuda.get_device_capability(index)
    return f"{torch.cuda.get_device_name(index)} sm_{major}{minor}"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(8 * 2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def engine_spec(engine: str, weights: Path, device: str, batch: int) -> EngineSpec:
    import ultralytics

    if weights.suffix != ".pt" or not weights.is_file():
        raise EngineError(f"ENGINE={engine} exports from PyTorch weights (.pt); {weights.name} is served as it is")

    return EngineSpec(
        engine=engine,
        weights_sha256=file_sha256(weights),
        device=device_name(device),
        runtime=runtime_version(engine),
        ultralytics=ultralytics.__version__,
        imgsz=EXPORT_IMGSZ,
        batch=max(1, batch),
        # TensorRT builds in half precision (what the GPU is fast at); CPU engines keep fp32.
        precision="fp16" if engine == "tensorrt" else "fp32",
    )


# -- where artefacts live -----------------------------------------------------------------------------------------


class EngineCache:
    """A local directory, mirrored to Cloud Storage next to the weights when MODEL is a gs:// object."""

    def __init__(self, model: str, cache_dir: Path, chunk_bytes: int = 32 * 2**20, workers: int = 8):
        self.cache_dir, self.chunk_bytes, self.workers = cache_dir, chunk_bytes, workers
        self.bucket = self.prefix = None
        if model.startswith("gs://"):
            self.bucket, _, name = model[len("gs://"):].partition("/")
            self.prefix = f"{name}.engines/"
            self.local_dir = cache_dir / self.bucket / self.prefix
        else:
            self.local_dir = cache_dir / "engines"

    def uri(self, spec: EngineSpec) -> str:
        if self.bucket:
            return f"gs://{self.bucket}/{self.prefix}{spec.filename}"
        return str(self.local_dir / spec.filename)

    def fetch(self, spec: EngineSpec) -> Path | None:
        """The artefact on local disk (downloaded and CRC32C-checked when it is in Cloud Storage), or None."""
        if not self.bucket:
            path = self.local_dir / spec.filename
            return path if path.is_file() else None
        from .weights import ObjectNotFound, download_gcs_object

        try:
            return download_gcs_object(self.bucket, self.prefix + spec.filename, self.cache_dir, self.chunk_bytes,
                                       self.workers)
        except ObjectNotFound:
            return None
        except WeightsError as exc:  # corrupt in storage (checksum), or unreachable: build our own
            raise EngineError(str(exc)) from None

    def store(self, spec: EngineSpec, built: Path, replace: bool) -> Path:
        """Move a freshly built artefact into place and upload it; `replace` overwrites a bad one in storage."""
        target = self.local_dir / spec.filename
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(built), target)
        if self.bucket:
            from .weights import upload_gcs_object

            upload_gcs_object(target, self.bucket, self.prefix + spec.filename, replace=replace)
        return target

    def discard(self, spec: EngineSpec) -> None:
        (self.local_dir / spec.filename).unlink(missing_ok=True)
        shutil.rmtree(_unpacked_dir(self.local_dir / spec.filename), ignore_errors=True)


# -- export and load ----------------------------------------------------------------------------------------------


def export(weights: Path, spec: EngineSpec, device: str, workdir: Path) -> Path:
    """Ultralytics' own export, from a private copy of the weights (the export writes next to its input); returns one
    file (an OpenVINO model directory is packed into a tar)."""
    from ultralytics import YOLO

    source = workdir / "model.pt"
    shutil.copyfile(weights, source)
    fmt, suffix, _ = _FORMATS[spec.engine]
    try:
        with warnings.catch_warnings():
            # The exporters' own deprecations (torch.jit.trace's FutureWarning): nothing a user of the endpoint can act on.
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            out = YOLO(str(source)).export(
                format=fmt, imgsz=spec.imgsz, batch=spec.batch, dynamic=spec.dynamic, device=device,
                quantize=16 if spec.precision == "fp16" else None, verbose=False,
            )
    except Exception as exc:
        raise EngineError(f"the {spec.engine} export failed: {type(exc).__name__}: {exc}") from None
    out = Path(out)
    if out.is_dir():
        packed = workdir / ("packed" + suffix)
        with tarfile.open(packed, "w") as tar:
            tar.add(out, arcname=".")
        return packed
    return out


def _extract(tar: tarfile.TarFile, path: Path) -> None:
    """Plain files and folders inside `path`, nothing else (tarfile's "data" filter, which Pythons before 3.11.4 lack:
    Debian bookworm's 3.11.2 among them)."""
    if hasattr(tarfile, "data_filter"):
        tar.extractall(path, filter="data")
        return
    root = path.resolve()
    for member in tar.getmembers():
        if not (member.isfile() or member.isdir()) or not (root / member.name).resolve().is_relative_to(root):
            raise EngineError(f"{member.name!r} in the artefact is not a plain file inside it")
    tar.extractall(path)


def _unpacked_dir(artefact: Path) -> Path:
    # Ultralytics recognises an OpenVINO model by its directory name ending in `_openvino_model`.
    return artefact.with_name(artefact.name[: -len(".tar")]) if artefact.name.endswith(".tar") else artefact


def open_engine(artefact: Path, spec: EngineSpec, device: str, task: str, name: str) -> LoadedModel:
    """Load an artefact with Ultralytics (YOLO(path)); an unreadable one is an EngineError."""
    path = artefact
    try:
        if artefact.name.endswith(".tar"):
            path = _unpacked_dir(artefact)
            shutil.rmtree(path, ignore_errors=True)
            with tarfile.open(artefact) as tar:
                _extract(tar, path)
        model = load_model(str(path), device, task, engine=spec.engine)
        if not device.startswith("cuda"):
            fit_to_cpu(model, path, cpu_cores())
    except Exception as exc:
        raise EngineError(f"{artefact.name} cannot be loaded: {type(exc).__name__}: {exc}") from None
    model.name = name
    return model


def fit_to_cpu(model: LoadedModel, path: Path, threads: int) -> None:
    """Compile a CPU engine again, the way it must run here: exact, and on exactly the cores this process has.

    OpenVINO picks its precision from the CPU it finds: f32 on AVX2, bf16 where the CPU has AVX-512 BF16 or AMX (recent
    Xeons, which Cloud Run may start), and bf16 moves keypoints by tens of pixels; it also pins its threads to cores,
    which on a shared machine makes it wait for cores other processes hold (measured: docs/performance.md). Ultralytics
    compiles with PERFORMANCE_HINT only, and a property set on another Core does not reach its compiled model, so the
    compile itself is redone here with Ultralytics' own Core, device and config plus ours. ONNX Runtime computes in
    f32 already; its thread pool defaults to the host's physical cores, which a container's CPU quota may not have."""
    model.warm_up()  # Ultralytics opens the runtime on the first inference
    backend = model.yolo.predictor.model.backend
    if model.engine == "openvino":
        recompile_openvino(backend, path, openvino_cpu_config(backend.ov, threads))
    elif model.engine == "onnx":
        reopen_onnx(backend, path, onnx_cpu_options(threads))


def openvino_cpu_config(ov, threads: int) -> dict:
    return {"INFERENCE_PRECISION_HINT": ov.Type.f32, "INFERENCE_NUM_THREADS": threads, "ENABLE_CPU_PINNING": False}


def recompile_openvino(backend, path: Path, config: dict) -> None:
    """Compile the model again on Ultralytics' own Core and device, with its config updated by `config`."""
    compile_ = backend.compile_model  # functools.partial(core.compile_model, device_name=..., config=...)
    merged = {**compile_.keywords["config"], **config}
    backend.compile_model = partial(compile_.func, device_name=compile_.keywords["device_name"], config=merged)
    xml = next(path.glob("*.xml")) if path.is_dir() else path
    ov_model = compile_.func.__self__.read_model(model=str(xml), weights=str(xml.with_suffix(".bin")))
    backend.ov_compiled_model = backend.compile_model(ov_model)


def onnx_cpu_options(threads: int):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    return options


def reopen_onnx(backend, path: Path, options) -> None:
    """A new ONNX Runtime session on the CPU with `options`, in place of the one Ultralytics opened."""
    import onnxruntime

    backend.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


# -- verification -------------------------------------------------------------------------------------------------


@dataclass
class Difference:
    """The largest differences between an engine's results and PyTorch's on the same images."""

    conf: float = 0.0
    coords: float = 0.0  # fraction of the image's longer side
    mask_iou: float = 1.0
    unmatched: int = 0  # detections only one side has, beyond the borderline ones
    class_pixels: float = 0.0  # semantic: fraction of pixels with another class id
    depth: float = 0.0  # depth: largest difference, as a fraction of PyTorch's deepest pixel

    def within(self, tolerance: Tolerance = TOLERANCE) -> bool:
        return (self.unmatched == 0 and self.conf <= tolerance.conf and self.coords <= tolerance.coords
                and self.mask_iou >= tolerance.mask_iou and self.class_pixels <= tolerance.class_pixels
                and self.depth <= tolerance.depth)

    def merge(self, other: "Difference") -> "Difference":
        return Difference(max(self.conf, other.conf), max(self.coords, other.coords),
                          min(self.mask_iou, other.mask_iou), self.unmatched + other.unmatched,
                          max(self.class_pixels, other.class_pixels), max(self.depth, other.depth))

    def describe(self) -> dict:
        return {"conf": round(self.conf, 6), "coords": round(self.coords, 6), "mask_iou": round(self.mask_iou, 4),
                "unmatched": self.unmatched, "class_pixels": round(self.class_pixels, 6), "depth": round(self.depth, 6)}


def compare(reference, candidate, conf_threshold: float, tolerance: Tolerance = TOLERANCE) -> Difference:
    """Match every detection of `candidate` to one of `reference` (same class, nearest corners) and measure the
    differences. A detection whose confidence sits within the tolerance of the threshold may be on one side only."""
    if reference.probs is not None:
        d = float((reference.probs.data.float() - candidate.probs.data.float()).abs().max())
        return Difference(conf=d)
    if reference.semantic_mask is not None:
        ref, cand = (r.semantic_mask.data.cpu().numpy().astype(np.int64) for r in (reference, candidate))
        return Difference(class_pixels=float((ref != cand).mean()) if ref.shape == cand.shape else 1.0)
    if reference.depth is not None:
        ref, cand = (r.depth.data.float().cpu().numpy() for r in (reference, candidate))
        if ref.shape != cand.shape:
            return Difference(depth=float("inf"))
        deepest = float(np.abs(ref).max()) or 1.0
        return Difference(depth=float(np.nan_to_num(np.abs(ref - cand), nan=np.inf).max()) / deepest)
    size = float(max(reference.orig_shape))
    ref, cand = _detections(reference), _detections(candidate)
    diff = Difference()
    used: set[int] = set()
    for i in np.argsort(-cand["conf"]):
        same_class = [j for j in range(len(ref["conf"])) if j not in used and ref["cls"][j] == cand["cls"][i]]
        if not same_class:
            diff.unmatched += cand["conf"][i] > conf_threshold + tolerance.conf
            continue
        distances = [float(np.abs(ref["corners"][j] - cand["corners"][i]).max()) for j in same_class]
        j = same_class[int(np.argmin(distances))]
        used.add(j)
        diff.coords = max(diff.coords, min(distances) / size)
        diff.conf = max(diff.conf, abs(float(ref["conf"][j] - cand["conf"][i])))
        if ref["kpts"] is not None:
            visible = (ref["kpts"][j][:, 2] > 0.5) & (cand["kpts"][i][:, 2] > 0.5)
            if visible.any():
                d = np.abs(ref["kpts"][j][visible, :2] - cand["kpts"][i][visible, :2]).max() / size
                diff.coords = max(diff.coords, float(d))
        if ref["masks"] is not None:
            a, b = ref["masks"][j], cand["masks"][i]
            union = np.logical_or(a, b).sum()
            diff.mask_iou = min(diff.mask_iou, float(np.logical_and(a, b).sum() / union) if union else 1.0)
    diff.unmatched += sum(1 for j in range(len(ref["conf"])) if j not in used
                          and ref["conf"][j] > conf_threshold + tolerance.conf)
    return diff


def _detections(result) -> dict:
    boxes = result.obb if result.obb is not None else result.boxes
    corners = boxes.xyxyxyxy.reshape(len(boxes), -1) if result.obb is not None else boxes.xyxy
    return {
        "corners": corners.float().cpu().numpy(),
        "conf": boxes.conf.float().cpu().numpy(),
        "cls": boxes.cls.cpu().numpy(),
        "kpts": result.keypoints.data.float().cpu().numpy() if result.keypoints is not None else None,
        "masks": result.masks.data.bool().cpu().numpy() if result.masks is not None else None,
    }


# -- the whole path -----------------------------------------------------------------------------------------------


class EngineNotBuilt(EngineError):
    """The cache has no usable artefact and the caller would not wait for an export."""


def prepare_engine(engine: str, model_uri: str, weights: Path, reference: list, warm_up_images: list[np.ndarray],
                   device: str, task: str, name: str, batch: int, cache: EngineCache,
                   build: bool = True) -> tuple[LoadedModel, dict]:
    """A verified engine: from the cache, or exported (and stored) when the cache has none or a bad one and `build`
    allows it (EngineNotBuilt otherwise). Raises EngineError saying why not; returns the model and what happened."""
    spec = engine_spec(engine, weights, device, batch)
    info = {"engine": engine, "artefact": cache.uri(spec), "key": spec.key}
    replace = False
    try:
        artefact = cache.fetch(spec)
    except EngineError as exc:
        log.warning(f"cached engine {cache.uri(spec)} is unusable ({exc}); rebuilding")
        artefact, replace = None, True
    if artefact is not None:
        try:
            model, diff = _load_and_verify(artefact, spec, device, task, name, reference, warm_up_images)
            return model, {**info, "source": "cache", "difference": diff.describe()}
        except EngineError as exc:
            log.warning(f"cached engine {cache.uri(spec)} is unusable ({exc}); rebuilding")
            cache.discard(spec)
            replace = True
    if not build:
        raise EngineNotBuilt(f"{cache.uri(spec)} is not built yet")
    cache.local_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache.local_dir, prefix=".build-") as workdir:
        log.info(f"exporting {name} to {engine} ({spec.key}); serving with PyTorch meanwhile")
        built = export(weights, spec, device, Path(workdir))
        # Loaded runtimes hold what they read (ONNX Runtime and TensorRT in memory, OpenVINO's weights mapped), so
        # the verified model keeps serving after its files move into the cache.
        model, diff = _load_and_verify(built, spec, device, task, name, reference, warm_up_images)
        try:
            cache.store(spec, built, replace)
        except Exception as exc:  # the engine is good; only keeping or sharing it failed
            log.warning(f"built engine could not be stored at {cache.uri(spec)}: {type(exc).__name__}: {exc}")
    return model, {**info, "source": "export", "difference": diff.describe()}


def _load_and_verify(artefact: Path, spec: EngineSpec, device: str, task: str, name: str, reference: list,
                     images: list[np.ndarray]) -> tuple[LoadedModel, Difference]:
    model = open_engine(artefact, spec, device, task, name)
    params = PredictParams()
    try:
        results = model.predict(images, params)
    except Exception as exc:
        raise EngineError(f"{artefact.name} fails on the warm-up image: {type(exc).__name__}: {exc}") from None
    tolerance = tolerance_for(spec)
    diff = Difference()
    for ref, got in zip(reference, results):
        diff = diff.merge(compare(ref, got, params.conf, tolerance))
    if not diff.within(tolerance):
        raise EngineError(f"{artefact.name} differs from PyTorch on the warm-up image beyond the tolerance: "
                          f"{diff.describe()} (allowed {asdict(tolerance)})")
    return model, diff
