"""Videos: recognised from their leading bytes, decoded as a stream of frames exactly as Ultralytics reads a video file.

Ultralytics' `predict(video, vid_stride=n)` opens the file with OpenCV, grabs n frames and keeps the last, and stops
after `int(frame_count / n)` kept frames (or when the stream ends). `VideoReader` does the same, a few frames at a
time, so per-frame results equal a local `YOLO(weights).predict(video, vid_stride=n)` and a video is never decoded
whole into memory. OpenCV reads from a path, so the upload is written to a temporary file (on Cloud Run, memory),
removed when the reader closes.
"""

from __future__ import annotations

import os
import tempfile
import threading
from dataclasses import dataclass

import numpy as np

from ..errors import BadImage, BadParameter, TooLarge

# MP4/MOV/M4V/3GP brands (ISO base media); HEIF/AVIF share the container but are still images.
_IMAGE_BRANDS = {b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis"}
_QUICKTIME_ATOMS = {b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"}
FORMATS = "MP4, MOV, M4V, AVI, MKV, WebM, MPEG-TS, MPEG, ASF/WMV, FLV"


def looks_like_a_video(data: bytes) -> bool:
    """True when the leading bytes name a video container OpenCV (FFmpeg) reads."""
    head = data[:16]
    if head[4:8] == b"ftyp":
        return head[8:12] not in _IMAGE_BRANDS
    if head[4:8] in _QUICKTIME_ATOMS:  # an old QuickTime file without ftyp
        return True
    if head[:4] == b"RIFF" and head[8:12] in (b"AVI ", b"AVIX"):
        return True
    if head[:4] == b"\x1a\x45\xdf\xa3":  # EBML: Matroska, WebM
        return True
    if head[:8] == b"\x30\x26\xb2\x75\x8e\x66\xcf\x11":  # ASF, WMV
        return True
    if head[:4] in (b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3"):  # MPEG program stream, MPEG-1 video
        return True
    if head[:3] == b"FLV":
        return True
    return len(data) > 188 * 2 and data[0] == data[188] == data[376] == 0x47  # MPEG transport stream


@dataclass(frozen=True)
class VideoFrame:
    index: int  # 0-based frame number in the video
    timestamp: float  # seconds
    image: np.ndarray  # BGR, as OpenCV decodes it


class VideoReader:
    """One uploaded video, read a few frames at a time from one thread at a time (reads and close share a lock)."""

    def __init__(self, path: str, capture, vid_stride: int, max_frames: int):
        self.path, self.capture, self.vid_stride = path, capture, vid_stride
        self.fps = capture.get(_cv2().CAP_PROP_FPS) or 0.0
        # What Ultralytics' loader expects to yield; 0 when the container does not say (then: until the stream ends).
        self.expected = int(capture.get(_cv2().CAP_PROP_FRAME_COUNT) / vid_stride)
        self.max_frames = max_frames
        self.kept = 0
        self.grabbed = 0
        self.ended = False
        self._pending: list[VideoFrame] = []
        self._lock = threading.Lock()
        if self.expected > max_frames:
            raise TooLarge(f"The video has {self.expected} frames to process at vid_stride={vid_stride}, over "
                           f"MAX_VIDEO_FRAMES={max_frames}; raise vid_stride or send a shorter video")

    def read(self, n: int) -> list[VideoFrame]:
        """Up to n more frames; [] at the end."""
        with self._lock:
            frames, self._pending = self._pending[:n], self._pending[n:]
            while len(frames) < n and not self.ended:
                frame = self._next()
                if frame is None:
                    self.ended = True
                else:
                    frames.append(frame)
        return frames

    def _next(self) -> VideoFrame | None:
        if self.capture is None or (self.expected and self.kept >= self.expected):
            return None
        for _ in range(self.vid_stride):
            if not self.capture.grab():
                return None
            self.grabbed += 1
        ok, image = self.capture.retrieve()
        if not ok or image is None:
            return None
        self.kept += 1
        if self.kept > self.max_frames:
            raise TooLarge(f"The video has more than MAX_VIDEO_FRAMES={self.max_frames} frames to process at "
                           f"vid_stride={self.vid_stride}")
        index = self.grabbed - 1
        return VideoFrame(index, round(index / self.fps, 6) if self.fps else 0.0, image)

    def close(self) -> None:
        with self._lock:
            if self.capture is not None:
                self.capture.release()
                self.capture = None
            if self.path:
                _remove(self.path)
                self.path = ""


def _cv2():
    import cv2

    return cv2


def open_video(data: bytes, vid_stride: int, max_frames: int, max_pixels: int) -> VideoReader:
    """Open an uploaded video; 400 when OpenCV cannot read it, 413 when its frames are too large or too many."""
    if vid_stride < 1:
        raise BadParameter(f"'vid_stride' must be an integer ≥ 1, got {vid_stride}")
    cv2 = _cv2()
    handle, path = tempfile.mkstemp(prefix="upload-", suffix=".video")
    capture = None
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        capture = cv2.VideoCapture(path)
        if not capture.isOpened():
            raise BadImage(f"Invalid video: it could not be opened (formats: {FORMATS})")
        width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if width * height > max_pixels:
            raise TooLarge(f"Video frames are {width}x{height} = {width * height} pixels, over MAX_IMAGE_PIXELS={max_pixels}")
        reader = VideoReader(path, capture, vid_stride, max_frames)
    except BaseException:
        if capture is not None:
            capture.release()
        _remove(path)
        raise
    try:
        # A container that opens but yields no frame (a truncated or mislabelled file) is refused up front.
        reader._pending = reader.read(1)
    except BaseException:
        reader.close()
        raise
    if not reader._pending:
        reader.close()
        raise BadImage(f"Invalid video: no frame could be decoded (formats: {FORMATS})")
    return reader


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
