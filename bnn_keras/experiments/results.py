"""Reads finished runs back and summarises them per scheme.

Everything here comes from the files the trainer wrote: the flip-flop ratio,
C2I and saturation are the values `bnn_keras.callbacks` logged during
training (`result.json` and `metrics.csv`), and the latent weights are read
from the saved `model.keras`. Nothing is measured a second time.

Which stage a number describes: for a two-step run, the last stage (stage 2,
binary weights, started from stage 1). Its C2I is measured against the weights
stage 2 started from, as the trainer's `C2IRatio(reference="stage")` does; for
a one-step run (`--stage=2 --init_from=scratch`) that is the random
initialization.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
from collections.abc import Sequence

import numpy as np

from bnn_keras.experiments.sweep import Run, is_finished

__all__ = ["RunRecord", "SchemeSummary", "collect", "read_json", "summarize"]

log = logging.getLogger(__name__)


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _read_csv(path) -> list[dict[str, float]]:
    if not os.path.exists(path):
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return [
            {k: float(v) for k, v in row.items() if v not in (None, "")}
            for row in csv.DictReader(f)
        ]


@dataclasses.dataclass
class RunRecord:
    """One finished run, as its files describe it."""

    scheme: str
    seed: int
    model_dir: str
    optimizer: str
    steps: int  # 1: binary from random weights; 2: stage 1, then stage 2
    stage1_weight_decay: float | None
    weight_decay: float  # of the last stage
    result: dict  # result.json of the last stage
    epochs: dict[int, list[dict[str, float]]]  # metrics.csv rows, per stage

    @property
    def last_stage(self) -> int:
        return max(self.epochs)

    @property
    def model_path(self) -> str:
        return os.path.join(self.model_dir, f"stage{self.last_stage}", "model.keras")

    @property
    def key(self) -> tuple:
        """`(steps, stage-1 decay, last-stage decay)`, as `PAPER_TABLE1` keys."""
        return (self.steps, self.stage1_weight_decay, self.weight_decay)


def _record(run: Run, model_dir: str) -> RunRecord:
    config = read_json(os.path.join(model_dir, "config.json"))
    stages = read_json(os.path.join(model_dir, "run.json"))["stages"]
    if stages == [1]:
        raise ValueError(f"{model_dir} trains stage 1 only; the analysis needs stage 2")
    steps = 2 if stages == [1, 2] else 1
    if steps == 1 and config.get("init_from") not in ("scratch",):
        log.warning("%s: stage 2 alone, not from scratch; counted as one step", model_dir)
    last = max(stages)
    return RunRecord(
        scheme=run.scheme,
        seed=run.seed,
        model_dir=model_dir,
        optimizer=config["optimizer"],
        steps=steps,
        stage1_weight_decay=float(config["weight_decay"]) if steps == 2 else None,
        weight_decay=float(config["stage2_weight_decay"]),
        result=read_json(os.path.join(model_dir, f"stage{last}", "result.json")),
        epochs={
            s: _read_csv(os.path.join(model_dir, f"stage{s}", "metrics.csv")) for s in stages
        },
    )


def collect(runs: Sequence[Run], root: str) -> list[RunRecord]:
    """The records of the finished runs among `runs` (unfinished ones are logged)."""
    records = []
    for run in runs:
        model_dir = run.model_dir(root)
        if not is_finished(model_dir):
            log.warning("%s seed %d is not finished; left out", run.scheme, run.seed)
            continue
        records.append(_record(run, model_dir))
    return records


@dataclasses.dataclass
class SchemeSummary:
    """The runs of one scheme (one per seed) and their statistics."""

    scheme: str
    records: list[RunRecord]

    @property
    def first(self) -> RunRecord:
        return self.records[0]

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.records]

    def values(self, key: str) -> np.ndarray:
        """`result[key]` of every seed (val_top1, ff_ratio_mean, c2i, saturation)."""
        return np.array([r.result.get(key, np.nan) for r in self.records], float)

    def mean(self, key: str) -> float:
        return float(np.mean(self.values(key)))

    def std(self, key: str) -> float:
        values = self.values(key)
        return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0

    def curve(self, key: str, stage: int | None = None) -> np.ndarray:
        """Per-epoch `key` of the given (default: last) stage, one row per seed."""
        rows = []
        for r in self.records:
            epochs = r.epochs[stage or r.last_stage]
            rows.append([e.get(key, np.nan) for e in epochs])
        width = min(len(row) for row in rows)
        return np.array([row[:width] for row in rows], float)


def summarize(records: Sequence[RunRecord]) -> dict[str, SchemeSummary]:
    """Groups the records by scheme, in first-seen order."""
    grouped: dict[str, list[RunRecord]] = {}
    for record in records:
        grouped.setdefault(record.scheme, []).append(record)
    return {name: SchemeSummary(name, rs) for name, rs in grouped.items()}
