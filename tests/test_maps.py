"""function/encode/maps.py: the class-id and depth PNGs, read back with OpenCV as a client would."""

from __future__ import annotations

import base64

import cv2
import numpy as np
import pytest

from function.encode import maps


def read_png(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


def test_class_maps_are_lossless_8_bit_or_16_bit_past_255():
    ids = np.random.default_rng(0).integers(0, 19, (37, 53)).astype(np.uint8)
    ids[0, :5] = 255  # excluded by `classes`
    back = read_png(maps.class_map_png(ids))
    assert back.dtype == np.uint8 and np.array_equal(back, ids)
    wide = np.random.default_rng(1).integers(0, 400, (20, 30)).astype(np.int16)
    back = read_png(maps.class_map_png(wide))
    assert back.dtype == np.uint16 and np.array_equal(back, wide)
    few = np.full((4, 4), 7, np.int16)  # a wide dtype whose ids fit a byte still goes as 8 bits
    assert read_png(maps.class_map_png(few)).dtype == np.uint8


@pytest.mark.parametrize("height, width, imgsz, shape", [(1080, 810, 640, (640, 480)), (720, 1280, 320, (180, 320)),
                                                         (100, 50, 640, (100, 50)), (3000, 1, 640, (640, 1))])
def test_inference_shape_keeps_the_aspect_and_never_upscales(height, width, imgsz, shape):
    assert maps.inference_shape(height, width, imgsz) == shape


def test_sampling_takes_the_centre_of_each_cell():
    depth = np.arange(16, dtype=np.float32).reshape(4, 4)
    assert np.array_equal(maps.sample(depth, (2, 2)), depth[np.ix_([1, 3], [1, 3])])
    assert np.array_equal(maps.sample(depth, (4, 4)), depth)


@pytest.mark.parametrize("bits", maps.BITS)
def test_depth_decodes_within_one_step_and_keeps_no_depth_at_zero(bits):
    rng = np.random.default_rng(bits)
    depth = rng.uniform(0.5, 40.0, (48, 64)).astype(np.float32)
    depth[0, 0] = 0.0  # no depth
    depth[1, 1] = np.nan
    depth[2, 2] = 1e-6  # tiny but valid: never 0
    encoded = maps.depth_png(depth, imgsz=64, bits=bits)
    valid = depth[np.isfinite(depth) & (depth > 0)]
    assert (encoded.min, encoded.max) == (float(valid.min()), float(valid.max()))
    pixels = read_png(encoded.data)
    assert pixels.shape == encoded.shape == (48, 64)
    assert pixels.dtype == (np.uint8 if bits == 8 else np.uint16)
    back = maps.decode_depth(pixels, encoded.max, bits)
    step = encoded.max / maps.LEVELS[bits]
    ok = np.isfinite(depth) & (depth > 0)
    assert np.abs(back[ok] - depth[ok]).max() <= step
    assert pixels[0, 0] == 0 and pixels[1, 1] == 0 and pixels[2, 2] >= 1
    if bits == 12:  # 4095 levels, bit-replicated over 16 bits: the low nibble repeats the high one
        assert np.array_equal(pixels & 15, pixels >> 12)
    assert encoded.platform()["data"] == base64.b64encode(encoded.data).decode()


def test_a_map_without_any_depth_has_no_range():
    encoded = maps.depth_png(np.zeros((10, 10), np.float32), imgsz=640, bits=16)
    assert (encoded.min, encoded.max) == (None, None)
    assert not read_png(encoded.data).any()
    with pytest.raises(ValueError):
        maps.depth_png(np.ones((2, 2), np.float32), imgsz=640, bits=10)


def test_nearness_is_one_nearest_zero_farthest_and_guards_a_flat_map():
    depth = np.array([[1.0, 2.0], [3.0, 0.0]], np.float32)
    assert maps.nearness(depth, 640).tolist() == [[1.0, 0.5], [0.0, 0.0]]
    assert maps.nearness(np.full((2, 2), 5.0, np.float32), 640).tolist() == [[1.0, 1.0], [1.0, 1.0]]
