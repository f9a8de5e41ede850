"""The plan: the input listed once, each item pinned as (name, generation, size), in name order, grouped into chunks.

It is written create-only as `plan.json` in the output folder: the first task to get there writes it, every other task
and every later attempt or execution reads that one, so all of them see the same items in the same chunks even if
the input changes meanwhile. The run id is a digest of what decides the answers (input, glob, weights, parameters):
an output folder holds one run, and asking it for another is refused rather than mixing two runs' lines.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass

from ..errors import BadParameter
from .reader import Item

PLAN = "plan.json"


def run_id(input_uri: str, glob: str | None, weights_sha256: str, params: dict) -> str:
    decided_by = json.dumps({"input": input_uri, "glob": glob, "weights": weights_sha256, "params": params},
                            sort_keys=True)
    return hashlib.sha256(decided_by.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Plan:
    run: str
    input: str
    glob: str | None
    params: dict
    chunk_size: int
    items: tuple[Item, ...]
    created: float  # unix time the plan was written: the start of the run's wall clock

    @property
    def chunks(self) -> int:
        return -(-len(self.items) // self.chunk_size)

    def chunk(self, index: int) -> tuple[Item, ...]:
        return self.items[index * self.chunk_size:(index + 1) * self.chunk_size]

    def to_json(self) -> bytes:
        header = {"run": self.run, "input": self.input, "glob": self.glob, "params": self.params,
                  "chunk_size": self.chunk_size, "chunks": self.chunks, "created": self.created}
        items = [[item.name, item.uri, item.generation, item.size] for item in self.items]
        return json.dumps({**header, "items": items}, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Plan:
        raw = json.loads(data)
        items = tuple(Item(name, uri, int(generation), int(size)) for name, uri, generation, size in raw["items"])
        return cls(raw["run"], raw["input"], raw["glob"], raw["params"], int(raw["chunk_size"]), items,
                   float(raw["created"]))


def load_or_make(output, source, glob: str | None, run: str, params: dict, chunk_size: int) -> tuple[Plan, bool]:
    """The run's plan: the one in the output folder, or a new one from a listing of the input, written create-only.
    Returns (plan, made_here)."""
    data = output.read(PLAN)
    if data is None:
        items = tuple(source.list(glob))
        if not items:
            raise BadParameter(f"--input {source.uri} holds no object{f' matching --glob {glob}' if glob else ''}")
        plan = Plan(run, source.uri, glob, params, chunk_size, items, time.time())
        if output.create(PLAN, plan.to_json()):
            return plan, True
        data = output.read(PLAN)  # another task listed at the same moment and wrote first: its plan is the plan
    plan = Plan.from_json(data)
    if plan.run != run:
        raise BadParameter(
            f"--output {output.uri} holds run {plan.run} (input {plan.input}, glob {plan.glob}, parameters "
            f"{json.dumps(plan.params, sort_keys=True)}); this is run {run}: give another --output, or the same "
            "input, glob, weights and parameters to resume that run")
    return plan, False
