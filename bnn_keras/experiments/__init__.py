"""Sweeps of training runs and their reports: the paper's analysis at small scale.

`python -m bnn_keras.experiments paper_analysis` trains every run of the
experiment from the flagfiles in `flags/analysis/` (skipping finished ones),
then writes a report with a Table-1-style table, verdicts on the paper's four
claims and plots into `docs/paper_analysis/`. See `sweep` (running), `paper`
(what to run, and the paper's figures), `results` (reading runs back),
`report` and `plots`.
"""

from bnn_keras.experiments.paper import EXPERIMENTS, Experiment
from bnn_keras.experiments.report import write_report
from bnn_keras.experiments.sweep import Run, RunFailedError, is_finished, run_all

__all__ = [
    "EXPERIMENTS",
    "Experiment",
    "Run",
    "RunFailedError",
    "is_finished",
    "run_all",
    "write_report",
]
