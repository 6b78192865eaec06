"""The paper's analysis as data: which flagfiles, which seeds, and the paper's numbers.

A scheme is a flagfile stem in `flags/analysis/`; its optimizer, number of
stages and weight decays are read back from each run's own `config.json` and
`run.json`, so the report never trusts a name. Seeds: one for every point of
the weight-decay sweep (a trend over eight points), three for the comparisons
whose differences are small (Adam against SGD, one step against two).
"""

from __future__ import annotations

import dataclasses

from bnn_keras.experiments.sweep import Run

__all__ = [
    "EXPERIMENTS",
    "Experiment",
    "PAPER_BEST_ONE_STEP_TOP1",
    "PAPER_SATURATION",
    "PAPER_TABLE1",
    "PAPER_TOP1",
]

# Table 1 of Liu, Shen et al. (ICML 2021): ImageNet, ResNet-18-based BNN, Adam.
# Keys: (steps, stage-1 weight decay, stage-2 weight decay); one-step runs
# have no stage 1 (None).
PAPER_TABLE1 = {
    (1, None, 1e-5): {"ff_ratio": 2.33e-3, "c2i": 0.4810},
    (1, None, 5e-6): {"ff_ratio": 1.62e-3, "c2i": 0.4960},
    (1, None, 0.0): {"ff_ratio": 2.86e-4, "c2i": 0.5243},
    (1, None, -1e-5): {"ff_ratio": 1.07e-7, "c2i": 0.9740},
    (2, 1e-5, 0.0): {"ff_ratio": 4.89e-4, "c2i": 0.6315},
    (2, 5e-6, 0.0): {"ff_ratio": 4.50e-4, "c2i": 0.6636},
}
# Top-1 (%) the paper reports for Adam and SGD, one and two steps (Section 4).
PAPER_TOP1 = {
    ("adam", 1): 61.49,
    ("sgd", 1): 58.98,
    ("adam", 2): 63.23,
    ("sgd", 2): 61.25,
}
PAPER_BEST_ONE_STEP_TOP1 = 61.89
# Fraction of sign inputs with |x| > 1 after the last epoch (Fig. 3).
PAPER_SATURATION = {"adam": 0.238, "sgd": 0.386}


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A named sweep: schemes (flagfile stems) and the seeds of each."""

    name: str
    description: str
    seeds: dict[str, tuple[int, ...]]

    def runs(self, schemes=None, seeds=None) -> list[Run]:
        """The runs, optionally only some schemes and some seeds."""
        chosen = []
        for scheme, scheme_seeds in self.seeds.items():
            if schemes is not None and scheme not in schemes:
                continue
            for seed in scheme_seeds if seeds is None else seeds:
                chosen.append(Run(scheme, seed))
        return chosen


_SWEEP = ("-1e-3", "-1e-5", "0", "5e-6", "1e-5", "1e-4", "1e-3", "1e-2")
_SEEDS = (0, 1, 2)

PAPER_ANALYSIS = Experiment(
    name="paper_analysis",
    description=(
        "Weight decay against FF-ratio and C2I (Table 1), Adam against SGD, one "
        "step against two, saturation and latent weights (Section 3-4)."
    ),
    # The comparisons first: their runs are the ones a partial sweep most needs.
    seeds={
        "adam_1step_wd5e-6": _SEEDS,
        "sgd_1step_wd5e-6": _SEEDS,
        "adam_2step_wd5e-6": _SEEDS,
        "sgd_2step_wd5e-6": _SEEDS,
        "adam_2step_wd1e-5": (0,),
        **{f"adam_1step_wd{wd}": (0,) for wd in _SWEEP if wd != "5e-6"},
    },
)

EXPERIMENTS = {PAPER_ANALYSIS.name: PAPER_ANALYSIS}
