"""The report's PNG figures, drawn with matplotlib's object API on an Agg canvas.

Each function takes scheme summaries (see `results`) and a path, writes one
PNG and returns its path. Seeds are drawn as a mean line with a min-max band.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from bnn_keras.experiments.results import SchemeSummary

__all__ = [
    "plot_curves",
    "plot_latent_histograms",
    "plot_versus_weight_decay",
]

_LINTHRESH = 1e-6  # the symlog x axis is linear inside +-1e-6 (it holds 0)


def _figure(width=6.4, height=4.0):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=110)
    return path


def plot_versus_weight_decay(
    sweep: Sequence[SchemeSummary],
    key: str,
    path: str,
    *,
    label: str,
    paper: dict[float, float] | None = None,
    log_y: bool = False,
) -> str:
    """`key` (a result field) of one-step runs against their weight decay.

    The x axis is symmetric-log, so negative decays and 0 fit on it; with
    `paper`, the paper's values (`{decay: value}`) are drawn on the same axes.
    """
    sweep = sorted(sweep, key=lambda s: s.first.weight_decay)
    decays = np.array([s.first.weight_decay for s in sweep])
    figure = _figure()
    axes = figure.add_subplot()
    means = np.array([s.mean(key) for s in sweep])
    lows = np.array([s.values(key).min() for s in sweep])
    highs = np.array([s.values(key).max() for s in sweep])
    axes.plot(decays, means, "o-", color="tab:blue", label="this sweep (mean)")
    axes.vlines(decays, lows, highs, color="tab:blue", alpha=0.5)
    if paper:
        paper_decays = sorted(paper)
        axes.plot(
            paper_decays,
            [paper[d] for d in paper_decays],
            "s--",
            color="tab:red",
            label="paper, Table 1 (ImageNet)",
        )
    axes.set_xscale("symlog", linthresh=_LINTHRESH)
    if log_y:
        axes.set_yscale("log")
    axes.set_xlabel("weight decay (symmetric log scale)")
    axes.set_ylabel(label)
    axes.set_title(f"{label} against weight decay, one-step Adam")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    return _save(figure, path)


def plot_curves(
    schemes: dict[str, SchemeSummary],
    key: str,
    path: str,
    *,
    label: str,
    title: str,
) -> str:
    """Per-epoch `key` of the last stage of each scheme: mean over seeds, min-max band.

    `schemes` maps a legend label to a summary.
    """
    figure = _figure()
    axes = figure.add_subplot()
    for name, summary in schemes.items():
        curve = summary.curve(key)
        if curve.size == 0:
            continue
        epochs = np.arange(1, curve.shape[1] + 1)
        mean = np.nanmean(curve, axis=0)
        (line,) = axes.plot(epochs, mean, "o-", label=f"{name} ({len(curve)} seeds)")
        if len(curve) > 1:
            axes.fill_between(
                epochs, curve.min(axis=0), curve.max(axis=0), color=line.get_color(), alpha=0.2
            )
    axes.set_xlabel("epoch of the last stage")
    axes.set_ylabel(label)
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    axes.legend()
    return _save(figure, path)


def plot_latent_histograms(
    values: dict[str, np.ndarray], path: str, *, bins: int = 121, limit: float = 1.5
) -> str:
    """Histograms (density) of latent weights, one panel per label."""
    figure = _figure(width=4.0 * len(values), height=3.4)
    edges = np.linspace(-limit, limit, bins + 1)
    for i, (name, v) in enumerate(values.items()):
        axes = figure.add_subplot(1, len(values), i + 1)
        inside = np.mean(np.abs(v) <= limit)
        axes.hist(v[np.abs(v) <= limit], bins=edges, density=True, color="tab:blue")
        axes.set_title(f"{name}\n({100 * inside:.1f}% within +-{limit:g})", fontsize=9)
        axes.set_xlabel("latent weight")
        for x in (-1.0, 0.0, 1.0):
            axes.axvline(x, color="grey", lw=0.7, ls=":")
    figure.axes[0].set_ylabel("density")
    return _save(figure, path)
