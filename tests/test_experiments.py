"""`bnn_keras.experiments`: running sweeps from flagfiles, and the report's verdicts."""

import csv
import dataclasses
import json
import os
import subprocess
import sys

import larq as lq
import numpy as np
import pytest
import tensorflow as tf

from bnn_keras.config import TrainConfig
from bnn_keras.experiments import EXPERIMENTS, Run, RunFailedError, is_finished, run_all
from bnn_keras.experiments import report as report_lib
from bnn_keras.experiments.results import collect, summarize

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENT = EXPERIMENTS["paper_analysis"]
TINY_FLAGS = (
    "--model=reactnet18\n--width_multiplier=0.125\n--epochs=1\n--steps_per_epoch=2\n"
    "--batch_size=16\n--stage=2\n--init_from=scratch\n"
)


def test_every_scheme_has_a_flagfile_that_the_trainer_accepts(monkeypatch):
    import copy

    from bnn_keras import train

    monkeypatch.chdir(REPO)  # nested --flagfile= lines are relative to the repository
    for scheme in EXPERIMENT.seeds:
        parsed = copy.deepcopy(train.FLAGS)
        parsed(["train", f"--flagfile=flags/analysis/{scheme}.cfg"])
        config = TrainConfig(
            **{f.name: parsed[f.name].value for f in dataclasses.fields(TrainConfig)}
        ).validate()
        assert config.model_dir == f"runs/paper_analysis/{scheme}/seed0"
        assert config.dataset == "mnist_5k" and config.model == "reactnet18"
        optimizer, steps, decay = scheme.split("_")
        assert config.optimizer == optimizer
        assert config.stage == ("all" if steps == "2step" else "2")
        decays = (config.weight_decay, config.stage2_weight_decay)
        assert report_lib.format_decay(decays[0 if steps == "2step" else 1]) == decay[2:]


class TestSweep:
    def test_trains_skips_finished_and_reports_failures(self, tmp_path):
        flags_dir = tmp_path / "flags"
        flags_dir.mkdir()
        (flags_dir / "tiny.cfg").write_text(TINY_FLAGS)
        (flags_dir / "broken.cfg").write_text(TINY_FLAGS + "--model=no_such_model\n")
        root = str(tmp_path / "runs")
        run = Run("tiny", 3)
        status = run_all([run], flags_dir=str(flags_dir), root=root, jobs=1)
        assert status == {run: "done"}
        assert is_finished(run.model_dir(root))
        with open(os.path.join(run.model_dir(root), "config.json")) as f:
            assert json.load(f)["seed"] == 3
        mtime = os.path.getmtime(os.path.join(run.model_dir(root), "stage2", "result.json"))

        broken = Run("broken", 0)
        with pytest.raises(RunFailedError, match="1 run") as info:
            run_all([run, broken], flags_dir=str(flags_dir), root=root, jobs=2)
        assert info.value.failed == [broken]
        log = open(os.path.join(broken.model_dir(root), "train.log")).read()
        assert "no_such_model" in log
        # The finished run was skipped, not trained again.
        assert os.path.getmtime(
            os.path.join(run.model_dir(root), "stage2", "result.json")
        ) == mtime

    def test_bad_arguments(self, tmp_path):
        with pytest.raises(ValueError, match="jobs"):
            run_all([Run("a", 0)], flags_dir=str(tmp_path), root=str(tmp_path), jobs=0)
        with pytest.raises(ValueError, match="no flagfile for scheme 'a'"):
            run_all([Run("a", 0)], flags_dir=str(tmp_path), root=str(tmp_path))


def _tiny_binary_model(peaks: bool) -> tf.keras.Model:
    model = tf.keras.Sequential(
        [
            tf.keras.Input((8, 8, 1)),
            lq.layers.QuantConv2D(
                64, 3, kernel_quantizer="ste_sign", input_quantizer="ste_sign", name="b"
            ),
        ]
    )
    rng = np.random.default_rng(0)
    kernel = model.get_layer("b").kernel.latent_variable
    if peaks:
        centers = rng.choice([-1.0, 0.0, 1.0], size=kernel.shape)
        values = centers + rng.normal(0, 0.04, kernel.shape)
    else:
        values = rng.normal(0, 0.2, kernel.shape)
    kernel.assign(values.astype("float32"))
    return model


def _fake_run(root, scheme, seed, *, optimizer, steps, decay, top1, ff, c2i, sat, model):
    """A run directory as the trainer leaves it, with chosen numbers."""
    run = Run(scheme, seed)
    d = run.model_dir(root)
    stages = [1, 2] if steps == 2 else [2]
    os.makedirs(d)
    config = dict(
        optimizer=optimizer,
        weight_decay=5e-6,
        stage2_weight_decay=0.0 if steps == 2 else decay,
        init_from="" if steps == 2 else "scratch",
        dataset="mnist_5k",
        model="reactnet18",
        width_multiplier=0.25,
        epochs=2,
        batch_size=64,
        steps_per_epoch=0,
    )
    for name, obj in (
        ("config.json", config),
        ("run.json", {"stages": stages}),
        ("dataset.json", {"num_train": 4000}),
    ):
        with open(os.path.join(d, name), "w") as f:
            json.dump(obj, f)
    for stage in stages:
        sd = os.path.join(d, f"stage{stage}")
        os.makedirs(sd)
        result = dict(val_top1=top1, ff_ratio_mean=ff, c2i=c2i, saturation=sat, wall_time_s=1.0)
        with open(os.path.join(sd, "result.json"), "w") as f:
            json.dump(result, f)
        with open(os.path.join(sd, "metrics.csv"), "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["epoch", "val_top1", "saturation", "ff_ratio", "c2i"])
            writer.writerow([0, top1 - 0.1, sat + 0.05, ff, c2i])
            writer.writerow([1, top1, sat, ff, c2i])
        model.save(os.path.join(sd, "model.keras"))
    return run


@pytest.fixture(scope="module")
def models():
    return {True: _tiny_binary_model(True), False: _tiny_binary_model(False)}


def _paper_like(root, models, *, agree: bool):
    """Fake runs whose numbers agree (or disagree) with all four claims."""
    runs = []
    sweep = {-1e-5: (1e-6, 0.9), 0.0: (1e-4, 0.6), 5e-6: (5e-4, 0.5), 1e-5: (1e-3, 0.45)}
    if not agree:  # FF falls and C2I rises with the decay
        sweep = {d: (2e-3 - ff, 1.2 - c2i) for d, (ff, c2i) in sweep.items()}
    for decay, (ff, c2i) in sweep.items():
        runs.append(
            _fake_run(
                root, f"adam_1step_wd{report_lib.format_decay(decay)}", 0,
                optimizer="adam", steps=1, decay=decay, top1=0.80, ff=ff, c2i=c2i,
                sat=0.20, model=models[agree],
            )
        )
    for seed, jitter in enumerate((0.0, 0.01, -0.01)):
        good, bad = (0.90 + jitter, 0.70 + jitter) if agree else (0.70 + jitter, 0.90 + jitter)
        specs = (
            ("adam_2step_wd5e-6", "adam", 2, good, 0.2 if agree else 0.4),
            ("sgd_2step_wd5e-6", "sgd", 2, bad, 0.4 if agree else 0.2),
            ("sgd_1step_wd5e-6", "sgd", 1, (0.5 if agree else 0.95) + jitter,
             0.4 if agree else 0.2),
        )
        for scheme, opt, steps, top1, sat in specs:
            runs.append(
                _fake_run(
                    root, scheme, seed, optimizer=opt, steps=steps, decay=5e-6, top1=top1,
                    ff=1e-4, c2i=0.7, sat=sat, model=models[agree],
                )
            )
        if seed:  # seed 0 of this scheme is the sweep's 5e-6 point
            runs.append(
                _fake_run(
                    root, "adam_1step_wd5e-6", seed, optimizer="adam", steps=1, decay=5e-6,
                    top1=0.80, ff=sweep[5e-6][0], c2i=sweep[5e-6][1], sat=0.2,
                    model=models[agree],
                )
            )
    return runs


class TestReport:
    @pytest.mark.parametrize("agree", [True, False])
    def test_verdicts_follow_the_numbers(self, tmp_path, models, agree):
        root = str(tmp_path / "runs")
        runs = _paper_like(root, models, agree=agree)
        path = report_lib.write_report(
            EXPERIMENT, root, str(tmp_path / "report"), command="CMD", runs=runs
        )
        summary = json.load(open(tmp_path / "report" / "summary.json"))
        states = [c["state"] for c in summary["claims"]]
        assert len(states) == 4
        expected = "reproduces" if agree else "does not reproduce"
        assert states == [expected] * 4, summary["claims"]
        text = open(path).read()
        assert "CMD" in text and "| two-step | adam | 5e-6 → 0 |" in text
        # The paper's Table 1 values sit next to ours.
        assert "| one-step | adam | -1e-5 |" in text and "0.9740" in text
        for png in ("ff_vs_weight_decay", "c2i_vs_weight_decay", "accuracy_adam_sgd",
                    "saturation", "latent_weights"):
            assert (tmp_path / "report" / f"{png}.png").read_bytes()[:4] == b"\x89PNG"
            assert f"({png}.png)" in text

    def test_seed_overlap_is_direction_only(self, tmp_path, models):
        root = str(tmp_path / "runs")
        runs = [
            _fake_run(root, scheme, seed, optimizer=opt, steps=2, decay=0.0, top1=top1,
                      ff=1e-4, c2i=0.7, sat=0.3, model=models[True])
            for scheme, opt, tops in (
                ("adam_2step_wd5e-6", "adam", (0.80, 0.90)),
                ("sgd_2step_wd5e-6", "sgd", (0.70, 0.85)),
            )
            for seed, top1 in enumerate(tops)
        ]
        summaries = summarize(collect(runs, root))
        state, text = report_lib._compare(
            summaries["adam_2step_wd5e-6"], summaries["sgd_2step_wd5e-6"], "val_top1"
        )
        assert state == "direction only"
        assert "85.00% (seeds: 80.0%, 90.0%)" in text

    def test_unfinished_runs_are_left_out_and_none_is_an_error(self, tmp_path):
        with pytest.raises(ValueError, match="No finished run"):
            report_lib.write_report(
                EXPERIMENT, str(tmp_path), str(tmp_path / "r"), command="x", runs=[Run("a", 0)]
            )


def test_command_line_errors(tmp_path):
    def call(*args):
        return subprocess.run(
            [sys.executable, "-m", "bnn_keras.experiments", *args],
            cwd=REPO, capture_output=True, text=True, timeout=300,
        )

    unknown = call("no_such_experiment", f"--root={tmp_path}")
    assert unknown.returncode == 2
    assert "`NAME` must be one of ['paper_analysis']" in unknown.stderr
    scheme = call("paper_analysis", "--schemes=adam_9step", f"--root={tmp_path}")
    assert scheme.returncode == 2 and "adam_9step" in scheme.stderr
    missing = call("paper_analysis", "--dataset=cifar10", f"--root={tmp_path}",
                   f"--data_dir={tmp_path}")
    assert missing.returncode == 2 and "cifar10" in missing.stderr
    assert os.listdir(tmp_path) == []
