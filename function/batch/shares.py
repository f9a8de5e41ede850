"""Chunk j belongs to task j mod COUNT: a retry (same index) or a re-execution with the same task count sees the same
share; a chunk is done when its results object exists, whoever wrote it."""

from __future__ import annotations

import re

from ..settings import TaskShare

_CHUNK = re.compile(r"results/chunk-(\d{6,})\.jsonl$")


def results_name(chunk: int) -> str:
    return f"results/chunk-{chunk:06d}.jsonl"


def errors_name(chunk: int) -> str:
    return f"errors/chunk-{chunk:06d}.jsonl"


def tracks_name(chunk: int) -> str:
    """A tracked run's chunk: each video's tracks and counts, as /predict's metadata has them."""
    return f"tracks/chunk-{chunk:06d}.json"


def share(chunks: int, task: TaskShare) -> list[int]:
    return list(range(task.index, chunks, task.count))


def done_chunks(output) -> dict[int, dict]:
    """{chunk: its counts} for every chunk whose results object exists: one listing of results/."""
    done = {}
    for name, metadata in output.list("results/").items():
        if match := _CHUNK.search(name):
            done[int(match.group(1))] = metadata
    return done
