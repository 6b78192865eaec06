"""Runs many `bnn_keras.train` runs from flagfiles, in parallel, skipping finished ones.

Every run is its own `python -m bnn_keras.train --flagfile=... --seed=S
--model_dir=...` process, so a run of a sweep is exactly what a user repeats by
hand from its `flags.cfg`, one crash stays one crash, and a sweep that is
stopped and started again resumes: a finished run (every stage it trains has its
`result.json`) is skipped, and an unfinished one resumes from its checkpoint.

With `jobs > 1` the processes share the machine's cores: each gets
`TF_NUM_INTRAOP_THREADS = cores // jobs`. On a small CPU two single-threaded
runs side by side finish sooner than two two-threaded runs one after the other,
because tracing a model (tens of seconds per run) uses one core.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

__all__ = ["Run", "RunFailedError", "is_finished", "run_all", "train_command"]

log = logging.getLogger(__name__)

LOG_NAME = "train.log"


class RunFailedError(RuntimeError):
    """Some runs of a sweep exited with an error; `failed` lists them."""

    def __init__(self, failed: Sequence["Run"], root: str):
        self.failed = list(failed)
        logs = ", ".join(os.path.join(r.model_dir(root), LOG_NAME) for r in self.failed)
        super().__init__(f"{len(self.failed)} run(s) failed; see {logs}")


@dataclasses.dataclass(frozen=True)
class Run:
    """One training run: the flagfile `flags_dir/<scheme>.cfg` with a seed.

    >>> Run("adam_1step_wd0", 2).model_dir("runs/paper_analysis")
    'runs/paper_analysis/adam_1step_wd0/seed2'
    """

    scheme: str
    seed: int

    def model_dir(self, root: str) -> str:
        return os.path.join(root, self.scheme, f"seed{self.seed}")

    def flagfile(self, flags_dir: str) -> str:
        return os.path.join(flags_dir, f"{self.scheme}.cfg")


def is_finished(model_dir: str) -> bool:
    """Whether every stage that the run in `model_dir` trains has its result."""
    try:
        with open(os.path.join(model_dir, "run.json"), encoding="utf-8") as f:
            stages = json.load(f)["stages"]
    except (OSError, ValueError, KeyError):
        return False
    return all(
        os.path.exists(os.path.join(model_dir, f"stage{s}", "result.json")) for s in stages
    )


def train_command(
    run: Run, *, flags_dir: str, root: str, train_flags: Sequence[str] = ()
) -> list[str]:
    """The command line that trains `run` (the flagfile first, so flags after it win)."""
    return [
        sys.executable,
        "-m",
        "bnn_keras.train",
        f"--flagfile={run.flagfile(flags_dir)}",
        *train_flags,
        f"--seed={run.seed}",
        f"--model_dir={run.model_dir(root)}",
    ]


def run_all(
    runs: Sequence[Run],
    *,
    flags_dir: str,
    root: str,
    jobs: int = 1,
    train_flags: Sequence[str] = (),
    cwd: str | None = None,
) -> dict[Run, str]:
    """Trains every unfinished run; returns `{run: "skipped" | "done"}`.

    Args:
        runs: the runs, in the order to start them.
        flags_dir: the directory of the flagfiles (nested `--flagfile=` lines in
            them are read relative to `cwd`).
        root: the runs go to `root/<scheme>/seed<seed>`.
        jobs: runs at a time.
        train_flags: extra flags for every run, after its flagfile (e.g.
            `["--epochs=2"]`).
        cwd: the working directory of the runs (default: this process's).

    Raises:
        ValueError: a bad `jobs`, or a missing flagfile.
        RunFailedError: after every run has ended, if some failed; each run's
            output is in `<model_dir>/train.log`.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"`jobs` must be a positive integer; received: jobs={jobs!r}")
    base = cwd or os.getcwd()
    for run in runs:
        path = os.path.join(base, run.flagfile(flags_dir))
        if not os.path.exists(path):
            raise ValueError(
                f"`flags_dir` has no flagfile for scheme {run.scheme!r}: {path} does not exist"
            )
    env = dict(os.environ)
    env["TF_NUM_INTRAOP_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))
    env["TF_CPP_MIN_LOG_LEVEL"] = env.get("TF_CPP_MIN_LOG_LEVEL", "1")

    status: dict[Run, str] = {}
    todo = []
    for run in runs:
        if is_finished(os.path.join(base, run.model_dir(root))):
            status[run] = "skipped"
        else:
            todo.append(run)
    log.info(
        "%d runs: %d finished before, %d to train, %d at a time",
        len(runs),
        len(runs) - len(todo),
        len(todo),
        jobs,
    )
    lock = threading.Lock()
    counter = {"ended": 0}
    failed = []

    def train(run: Run) -> None:
        model_dir = os.path.join(base, run.model_dir(root))
        os.makedirs(model_dir, exist_ok=True)
        command = train_command(run, flags_dir=flags_dir, root=root, train_flags=train_flags)
        start = time.monotonic()
        with open(os.path.join(model_dir, LOG_NAME), "ab") as out:
            out.write(f"$ {' '.join(command)}\n".encode())
            out.flush()
            code = subprocess.run(
                command, cwd=base, env=env, stdout=out, stderr=subprocess.STDOUT
            ).returncode
        with lock:
            counter["ended"] += 1
            ended = counter["ended"]
            if code:
                failed.append(run)
            else:
                status[run] = "done"
        log.info(
            "[%d/%d] %s seed %d %s in %.0f s",
            ended,
            len(todo),
            run.scheme,
            run.seed,
            f"FAILED (exit {code})" if code else "done",
            time.monotonic() - start,
        )

    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(train, todo))
    if failed:
        raise RunFailedError(failed, root)
    return status
