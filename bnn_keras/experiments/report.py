"""The report: a Table-1-style Markdown table, verdicts on the paper's claims, plots.

`write_report` reads the finished runs (see `results`), draws the figures (see
`plots`) and writes `report.md` and `summary.json` into the report directory.
The verdicts are computed from the numbers with fixed rules, stated in the
report next to each verdict, so that a rerun on other data or more seeds
judges by the same rules:

1. Weight decay: FF-ratio rises and C2I falls with the decay of one-step Adam
   runs, judged by the Spearman rank correlation (|rho| >= 0.8) over the whole
   sweep and over the paper's decays (-1e-5 to 1e-5), where the FF span must
   also exceed four seed standard deviations; one of the two gives "partly".
2. Adam beats SGD, one and two steps: "reproduces" when every Adam seed beats
   every SGD seed; "direction only" when the means agree but the seeds overlap.
   Saturation (Fig. 3) is compared the same way (Adam lower).
3. Two steps beat one: the two-step Adam run (5e-6, then 0) against the best
   one-step Adam scheme, by the same seed rule.
4. Three peaks: the latent weights of the two-step Adam model have a local
   density peak near -1, near 0 and near +1 (each at least 10% above the
   density 0.3 to either side).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import platform
from collections.abc import Sequence

import numpy as np

from bnn_keras.experiments import paper, plots
from bnn_keras.experiments.results import SchemeSummary, read_json, collect, summarize

__all__ = ["find_peaks", "format_decay", "verdicts", "write_report"]

log = logging.getLogger(__name__)

TWO_STEP_ADAM = "adam_2step_wd5e-6"
ONE_STEP_ADAM = "adam_1step_wd5e-6"
ONE_STEP_SGD = "sgd_1step_wd5e-6"
TWO_STEP_SGD = "sgd_2step_wd5e-6"
RHO = 0.8
NOISE_FACTOR = 4


def _spearman(x, y) -> float:
    rank_x = np.argsort(np.argsort(x))
    rank_y = np.argsort(np.argsort(y))
    if len(x) < 3 or np.std(rank_x) == 0 or np.std(rank_y) == 0:
        return float("nan")
    return float(np.corrcoef(rank_x, rank_y)[0, 1])


def _compare(better: SchemeSummary, worse: SchemeSummary, key: str, higher=True):
    """('reproduces' | 'direction only' | 'does not reproduce', text)."""
    b, w = better.values(key), worse.values(key)
    diff = b.mean() - w.mean() if higher else w.mean() - b.mean()
    separated = b.min() > w.max() if higher else b.max() < w.min()
    if diff > 0 and separated:
        state = "reproduces"
    elif diff > 0:
        state = "direction only"
    else:
        state = "does not reproduce"
    return state, f"{_fmt_values(b, key)} against {_fmt_values(w, key)}"


def _fmt_values(values: np.ndarray, key: str) -> str:
    scale, unit = (100.0, "%") if key in ("val_top1", "saturation") else (1.0, "")
    shown = ", ".join(f"{scale * v:.1f}{unit}" for v in values)
    return f"{scale * values.mean():.2f}{unit} (seeds: {shown})"


def find_peaks(values: np.ndarray, centers=(-1.0, 0.0, 1.0)) -> dict[float, bool]:
    """For each center, whether the density has a peak there (see the module doc).

    >>> rng = np.random.default_rng(0)
    >>> three = np.concatenate([rng.normal(c, 0.05, 3000) for c in (-1, 0, 1)])
    >>> find_peaks(three)
    {-1.0: True, 0.0: True, 1.0: True}
    >>> find_peaks(rng.normal(0, 0.2, 9000))
    {-1.0: False, 0.0: True, 1.0: False}
    """
    edges = np.linspace(-1.6, 1.6, 65)  # bins of 0.05
    density, _ = np.histogram(values, bins=edges, density=True)
    density = np.convolve(density, np.ones(3) / 3, mode="same")
    mids = (edges[:-1] + edges[1:]) / 2

    def at(x):
        return density[np.argmin(np.abs(mids - x))]

    found = {}
    for c in centers:
        top = density[np.abs(mids - c) <= 0.1].max()
        found[float(c)] = bool(top > 1.1 * max(at(c - 0.3), at(c + 0.3)))
    return found


def verdicts(summaries: dict[str, SchemeSummary], latent: dict[str, np.ndarray]) -> list[dict]:
    """The four claims, each with a state and the numbers behind it."""
    out = []
    sweep = [s for s in summaries.values() if s.first.steps == 1 and s.first.optimizer == "adam"]
    if len(sweep) >= 3:
        decays = [s.first.weight_decay for s in sweep]
        ff = [s.mean("ff_ratio_mean") for s in sweep]
        c2i = [s.mean("c2i") for s in sweep]
        rho_ff, rho_c2i = _spearman(decays, ff), _spearman(decays, c2i)
        inside = [i for i, d in enumerate(decays) if -1e-5 <= d <= 1e-5]
        rho_ff_in = _spearman([decays[i] for i in inside], [ff[i] for i in inside])
        rho_c2i_in = _spearman([decays[i] for i in inside], [c2i[i] for i in inside])
        whole = rho_ff >= RHO and rho_c2i <= -RHO
        # Within the paper's decays, is the FF trend larger than the seed noise?
        noise = max((s.std("ff_ratio_mean") for s in sweep), default=0.0)
        span = max(ff[i] for i in inside) - min(ff[i] for i in inside) if inside else 0.0
        in_range = rho_ff_in >= RHO and rho_c2i_in <= -RHO and span > NOISE_FACTOR * noise
        if whole and in_range:
            state = "reproduces"
        elif whole or in_range:
            state = "partly"
        else:
            state = "does not reproduce"
        out.append(
            dict(
                claim="1. FF-ratio rises and C2I falls with weight decay",
                state=state,
                numbers=(
                    f"over the whole sweep ({format_decay(min(decays))} to "
                    f"{format_decay(max(decays))}, {len(sweep)} decays): Spearman "
                    f"rho(decay, FF) = {rho_ff:+.2f}, rho(decay, C2I) = {rho_c2i:+.2f}, FF "
                    f"from {min(ff):.3g} to {max(ff):.3g}; over the paper's range (-1e-5 to "
                    f"1e-5): {rho_ff_in:+.2f} and {rho_c2i_in:+.2f}, FF spanning {span:.2g} "
                    f"against a seed standard deviation of {noise:.2g} (the paper: "
                    "1.07e-7 to 2.33e-3)"
                ),
                rule=(
                    f"rho(FF) >= {RHO} and rho(C2I) <= -{RHO} over the whole sweep and over "
                    f"the paper's range, where the FF span must also exceed {NOISE_FACTOR}x "
                    "the seed standard deviation; one of the two: partly"
                ),
            )
        )
    pairs = [(ONE_STEP_ADAM, ONE_STEP_SGD, "one step"), (TWO_STEP_ADAM, TWO_STEP_SGD, "two steps")]
    if all(a in summaries and s in summaries for a, s, _ in pairs):
        parts, states = [], []
        for adam, sgd, name in pairs:
            state, text = _compare(summaries[adam], summaries[sgd], "val_top1")
            states.append(state)
            parts.append(f"{name}: top-1 Adam {text} SGD ({state})")
        sat_state, sat_text = _compare(
            summaries[TWO_STEP_ADAM], summaries[TWO_STEP_SGD], "saturation", higher=False
        )
        parts.append(f"saturation after the last epoch (two steps): Adam {sat_text} SGD ({sat_state})")
        state = _combine(states + [sat_state])
        out.append(
            dict(
                claim="2. Adam beats SGD, and leaves fewer saturated activations",
                state=state,
                numbers="; ".join(parts),
                rule="every Adam seed beats every SGD seed (else: direction only, or not)",
            )
        )
    if TWO_STEP_ADAM in summaries and sweep:
        best = max(sweep, key=lambda s: s.mean("val_top1"))
        state, text = _compare(summaries[TWO_STEP_ADAM], best, "val_top1")
        out.append(
            dict(
                claim="3. Two steps (5e-6, then 0) beat one step",
                state=state,
                numbers=f"two-step Adam {text} the best one-step Adam scheme ({best.scheme})",
                rule="every two-step seed beats every seed of the best one-step scheme",
            )
        )
    if latent:
        parts, states = [], []
        for name, values in latent.items():
            peaks = find_peaks(values)
            where = ", ".join(f"{c:+g}: {'yes' if p else 'no'}" for c, p in peaks.items())
            parts.append(f"{name}: peak at {where}")
            states.append("reproduces" if all(peaks.values()) else "does not reproduce")
        out.append(
            dict(
                claim="4. Adam's latent weights pile up in three peaks, near -1, 0 and +1",
                state=states[0],
                numbers="; ".join(parts),
                rule="a density peak within 0.1 of each of -1, 0, +1 (10% above +-0.3 away)",
            )
        )
    return out


def _combine(states: Sequence[str]) -> str:
    if all(s == "reproduces" for s in states):
        return "reproduces"
    if all(s in ("reproduces", "direction only") for s in states):
        return "direction only"
    if any(s != "does not reproduce" for s in states):
        return "partly"
    return "does not reproduce"


def _fmt(summary: SchemeSummary, key: str, fmt: str, scale: float = 1.0) -> str:
    values = scale * summary.values(key)
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{format(values.mean(), fmt)} ± {format(np.std(values, ddof=1), fmt)}"


def format_decay(value: float) -> str:
    """A weight decay as the flagfiles write it.

    >>> [format_decay(v) for v in (5e-6, 0.0, -1e-05, 0.001)]
    ['5e-6', '0', '-1e-5', '1e-3']
    """
    if value == 0:
        return "0"
    mantissa, exponent = f"{value:e}".split("e")
    return f"{float(mantissa):g}e{int(exponent)}"


def _decay_text(record) -> str:
    if record.steps == 1:
        return format_decay(record.weight_decay)
    return f"{format_decay(record.stage1_weight_decay)} → {format_decay(record.weight_decay)}"


def _paper_top1(record) -> str:
    """The paper's top-1 for the schemes of its Adam-SGD comparison (5e-6 decay)."""
    if (record.weight_decay if record.steps == 1 else record.stage1_weight_decay) != 5e-6:
        return "—"
    if record.steps == 2 and record.weight_decay != 0:
        return "—"
    value = paper.PAPER_TOP1[(record.optimizer, record.steps)]
    return f"{value:.2f}" + ("*" if (record.optimizer, record.steps) == ("adam", 1) else "")


def _table(summaries: dict[str, SchemeSummary]) -> str:
    def order(s):
        r = s.first
        return (r.optimizer != "adam", r.steps, -r.weight_decay, -(r.stage1_weight_decay or 0))

    lines = [
        "| Scheme | Optimizer | Weight decay | FF-ratio | C2I | Top-1 (%) | Saturation (%) "
        "| Seeds | Paper FF | Paper C2I | Paper top-1 (%) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in sorted(summaries.values(), key=order):
        r = s.first
        ref = paper.PAPER_TABLE1.get(r.key, {}) if r.optimizer == "adam" else {}
        top1 = _paper_top1(r)
        lines.append(
            "| "
            + " | ".join(
                [
                    "one-step" if r.steps == 1 else "two-step",
                    r.optimizer,
                    _decay_text(r),
                    _fmt(s, "ff_ratio_mean", ".3g"),
                    _fmt(s, "c2i", ".4f"),
                    _fmt(s, "val_top1", ".2f", 100),
                    _fmt(s, "saturation", ".1f", 100),
                    str(len(s.records)),
                    format(ref["ff_ratio"], ".3g") if ref else "—",
                    format(ref["c2i"], ".4f") if ref else "—",
                    top1,
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def write_report(
    experiment: paper.Experiment,
    root: str,
    report_dir: str,
    *,
    command: str,
    runs=None,
) -> str:
    """Writes `report.md`, `summary.json` and the PNGs; returns the report's path.

    Raises:
        ValueError: none of the experiment's runs is finished under `root`.
    """
    records = collect(runs if runs is not None else experiment.runs(), root)
    if not records:
        raise ValueError(
            f"No finished run of {experiment.name!r} under `root`; received: root={root!r}"
        )
    summaries = summarize(records)
    os.makedirs(report_dir, exist_ok=True)
    figures = _figures(summaries, report_dir)
    latent = _latent(summaries)
    if latent:
        figures["latent"] = plots.plot_latent_histograms(
            latent, os.path.join(report_dir, "latent_weights.png")
        )
    claims = verdicts(summaries, latent)
    text = _markdown(experiment, summaries, claims, figures, command, report_dir)
    path = os.path.join(report_dir, "report.md")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    summary = {
        name: {
            "seeds": s.seeds,
            **{k: s.values(k).tolist() for k in ("val_top1", "ff_ratio_mean", "c2i", "saturation")},
        }
        for name, s in summaries.items()
    }
    with open(os.path.join(report_dir, "summary.json"), "w", encoding="utf-8") as f:
        json.dump({"schemes": summary, "claims": claims}, f, indent=2, sort_keys=True)
    log.info("Report written to %s", path)
    return path


def _figures(summaries, report_dir) -> dict[str, str]:
    figures = {}
    sweep = [s for s in summaries.values() if s.first.steps == 1 and s.first.optimizer == "adam"]
    paper_one_step = {k[2]: v for k, v in paper.PAPER_TABLE1.items() if k[0] == 1}
    if len(sweep) >= 2:
        figures["ff"] = plots.plot_versus_weight_decay(
            sweep, "ff_ratio_mean", os.path.join(report_dir, "ff_vs_weight_decay.png"),
            label="FF-ratio (mean per iteration)",
            paper={d: v["ff_ratio"] for d, v in paper_one_step.items()},
            log_y=True,
        )
        figures["c2i"] = plots.plot_versus_weight_decay(
            sweep, "c2i", os.path.join(report_dir, "c2i_vs_weight_decay.png"),
            label="C2I (final)",
            paper={d: v["c2i"] for d, v in paper_one_step.items()},
        )
    compared = {
        label: summaries[name]
        for label, name in (
            ("Adam, one step", ONE_STEP_ADAM),
            ("SGD, one step", ONE_STEP_SGD),
            ("Adam, two steps", TWO_STEP_ADAM),
            ("SGD, two steps", TWO_STEP_SGD),
        )
        if name in summaries
    }
    if compared:
        figures["accuracy"] = plots.plot_curves(
            compared, "val_top1", os.path.join(report_dir, "accuracy_adam_sgd.png"),
            label="validation top-1", title="Adam against SGD: validation accuracy",
        )
        figures["saturation"] = plots.plot_curves(
            compared, "saturation", os.path.join(report_dir, "saturation.png"),
            label="fraction of sign inputs with |x| > 1",
            title="Activation saturation (paper Fig. 3)",
        )
    return figures


def _latent(summaries) -> dict[str, np.ndarray]:
    import tensorflow as tf

    from bnn_keras import models  # noqa: F401  (registers the layers load_model needs)
    from bnn_keras.callbacks import latent_values

    out = {}
    for label, name in (
        ("Adam, two steps", TWO_STEP_ADAM),
        ("Adam, one step", ONE_STEP_ADAM),
        ("SGD, two steps", TWO_STEP_SGD),
    ):
        if name in summaries:
            model = tf.keras.models.load_model(summaries[name].first.model_path, compile=False)
            out[f"{label} (seed {summaries[name].first.seed})"] = latent_values(model)
    return out


def _markdown(experiment, summaries, claims, figures, command, report_dir) -> str:
    records = [r for s in summaries.values() for r in s.records]
    wall = sum(
        read_json(os.path.join(r.model_dir, f"stage{st}", "result.json"))["wall_time_s"]
        for r in records
        for st in r.epochs
    )
    first = records[0]
    config = read_json(os.path.join(first.model_dir, "config.json"))
    info = read_json(os.path.join(first.model_dir, "dataset.json"))
    steps = config["steps_per_epoch"] or info["num_train"] // config["batch_size"]
    iterations = steps * config["epochs"]
    lines = [
        f"# {experiment.name}: the paper's analysis at small scale",
        "",
        f"Generated on {datetime.date.today().isoformat()} by:",
        "",
        "```bash",
        command,
        "```",
        "",
        f"{experiment.description} Data: `{config['dataset']}`; model: `{config['model']}` "
        f"(width {config['width_multiplier']}); {config['epochs']} epochs per stage at batch "
        f"{config['batch_size']}; {len(records)} runs, {wall / 60:.0f} min of training "
        f"summed over the runs (they run two at a time), on {platform.machine()} with {os.cpu_count()} cores. FF-ratio, C2I and "
        "saturation are the values `bnn_keras.callbacks` logged during training. For "
        "two-step runs they describe stage 2, with C2I measured against the weights "
        "stage 2 started from; one-step runs train binary weights from random ones. Each "
        "run is repeated by `python -m bnn_keras.train --flagfile=RUN_DIR/flags.cfg`.",
        "",
        "## Verdicts",
        "",
    ]
    for c in claims:
        lines += [f"- **{c['claim']}: {c['state']}.** {c['numbers']}. *Rule: {c['rule']}.*"]
    lines += [
        "",
        "## Table 1, side by side",
        "",
        "Mean ± standard deviation over seeds. The paper's columns are its ImageNet "
        "figures (Table 1 for FF and C2I; Section 4 for top-1 where it gives one); "
        f"its runs take about 1.28M iterations per stage, these {iterations}. "
        f"\\* The paper gives {paper.PAPER_TOP1[('adam', 1)]}% for one-step Adam in its "
        f"comparison with SGD, and {paper.PAPER_BEST_ONE_STEP_TOP1}% as its best one-step "
        "result.",
        "",
        _table(summaries),
        "",
        "## Figures",
        "",
    ]
    titles = {
        "ff": "FF-ratio against weight decay",
        "c2i": "C2I against weight decay",
        "accuracy": "Validation accuracy, Adam against SGD",
        "saturation": "Saturated activations per epoch",
        "latent": "Latent weights after training",
    }
    for key, path in figures.items():
        lines += [f"### {titles[key]}", "", f"![{titles[key]}]({os.path.relpath(path, report_dir)})", ""]
    return "\n".join(lines)
