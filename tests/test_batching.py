"""Batching that never changes an answer: one model call per (parameters, image shape), no waiting for a batch to fill,
and owner threads that can be swapped (an exported engine, CPU replicas) without losing a job."""

from __future__ import annotations

import queue
import threading

import numpy as np

from function.models.batcher import InferenceLoop, Job, collect_batch, run_batch
from function.models.params import PredictParams


def test_a_lone_job_runs_at_once_and_a_busy_queue_is_taken_whole():
    jobs = queue.Queue()
    jobs.put(Job(np.zeros((4, 4, 3), np.uint8), PredictParams()))
    batch, stop = collect_batch(jobs, max_size=8)  # returns without waiting for more
    assert len(batch) == 1 and not stop
    for _ in range(5):
        jobs.put(Job(np.zeros((4, 4, 3), np.uint8), PredictParams()))
    batch, _ = collect_batch(jobs, max_size=8)
    assert len(batch) == 5 and jobs.empty()


def test_one_call_per_parameters_and_shape():
    calls = []

    def predict(images, params):
        calls.append((len(images), images[0].shape, params.conf))
        return [(image.shape, params.conf) for image in images]

    wide, tall = np.zeros((480, 640, 3), np.uint8), np.zeros((640, 480, 3), np.uint8)
    jobs = [Job(wide, PredictParams()), Job(tall, PredictParams()), Job(wide, PredictParams()),
            Job(wide, PredictParams(conf=0.5))]
    run_batch(predict, jobs)
    assert calls == [(2, wide.shape, 0.25), (1, tall.shape, 0.25), (1, wide.shape, 0.5)]
    assert [job.future.result(0) for job in jobs] == [(wide.shape, 0.25), (tall.shape, 0.25), (wide.shape, 0.25),
                                                      (wide.shape, 0.5)]


def test_equal_shapes_keep_the_single_image_letterbox_and_answers(weights, bus_jpg, zidane_jpg):
    """Ultralytics letterboxes a batch of equal shapes exactly as one image (a mixed batch is padded to a common size:
    other pixels, other answers). The batched forward itself differs from single images only by float rounding."""
    import cv2
    from ultralytics import YOLO

    from function.models import engines

    model = YOLO(str(weights["pose"]))
    bus = cv2.imread(str(bus_jpg))
    flipped = np.ascontiguousarray(bus[:, ::-1])
    zidane = cv2.imread(str(zidane_jpg))
    singles = [model.predict(image, verbose=False)[0] for image in (bus, flipped)]
    predictor = model.predictor

    def letterboxed(images):
        return predictor.preprocess(images)

    alone = [letterboxed([image]) for image in (bus, flipped)]
    together = letterboxed([bus, flipped])
    assert all(np.array_equal(together[i].numpy(), alone[i][0].numpy()) for i in range(2))
    mixed = letterboxed([bus, zidane])
    assert mixed[0].shape != alone[0][0].shape, "a mixed-shape batch is padded: this is why shapes are grouped"

    batched = model.predict([bus, flipped], verbose=False)
    for single, result in zip(singles, batched):
        diff = engines.compare(single, result, 0.25)
        assert diff.unmatched == 0 and diff.conf < 1e-4 and diff.coords < 1e-5, diff.describe()


def test_a_swap_moves_every_job_to_the_new_models():
    served = []
    gate = threading.Event()

    def model(name):
        def predict(images, params):
            gate.wait(5)
            served.append((name, threading.current_thread().name))
            return [name for _ in images]
        return predict

    loop = InferenceLoop([model("pytorch-1"), model("pytorch-2")], max_queue=64)
    loop.start()
    assert len(loop.threads) == 2
    gate.set()
    params, image = PredictParams(), np.zeros((2, 2, 3), np.uint8)
    assert {loop.predict_sync(image, params, 5) for _ in range(4)} <= {"pytorch-1", "pytorch-2"}
    loop.swap([model("onnx")])
    futures = [f for _ in range(12) for f in loop.submit([image], params)]
    answers = [f.result(10) for f in futures]
    loop.stop(timeout=5)
    # A thread retired while it waited may have taken one job: it hands it back rather than run the old model.
    assert answers == ["onnx"] * 12
    assert {thread for name, thread in served if name == "onnx"} == {"inference"}
    assert not any(thread.is_alive() for thread in loop.threads)
