"""The trainer: `bnn_keras.training.run`, the command line, recipes, resume, bad input."""

import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import tensorflow as tf
from absl import flags
from absl.testing import flagsaver

from bnn_keras import training
from bnn_keras.config import TrainConfig

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(model="reactnet18", width_multiplier=0.125, batch_size=32, steps_per_epoch=3)


def tiny_config(tmp_path, **kwargs):
    return TrainConfig(**{**TINY, "epochs": 2, "model_dir": str(tmp_path / "run"), **kwargs})


def snapshot(path):
    """Every file under `path` with its modification time and size."""
    found = {}
    for f in glob.glob(os.path.join(path, "**"), recursive=True):
        if os.path.isfile(f):
            st = os.stat(f)
            found[f] = (st.st_mtime_ns, st.st_size)
    return found


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("finished")
    config = tiny_config(tmp_path)
    return config, training.run(config, flagfile="--stage=all\n")


class TestRun:
    def test_both_stages_write_their_results(self, finished_run):
        config, results = finished_run
        assert sorted(results) == [1, 2]
        for stage in (1, 2):
            d = os.path.join(config.model_dir, f"stage{stage}")
            with open(os.path.join(d, "result.json")) as f:
                result = json.load(f)
            assert set(result) >= {
                "val_top1", "val_top5", "ff_ratio_mean", "c2i", "saturation", "wall_time_s"
            }
            assert 0.0 <= result["val_top1"] <= 1.0
            assert -1.0 <= result["c2i"] <= 1.0
            assert 0.0 < result["saturation"] < 1.0
            with open(os.path.join(d, "metrics.csv")) as f:
                rows = f.read().strip().splitlines()
            assert len(rows) == 1 + config.epochs
            header = rows[0].split(",")
            assert {"ff_ratio", "c2i", "changed_from_init", "saturation"} <= set(header)
            assert os.path.exists(os.path.join(d, "model.keras"))
        for name in ("config.json", "dataset.json", "run.json", "flags.cfg"):
            assert os.path.exists(os.path.join(config.model_dir, name))

    def test_stage2_model_is_binary_and_stage1_is_not(self, finished_run):
        import larq as lq

        config, _ = finished_run
        counts = {}
        for stage in (1, 2):
            model = tf.keras.models.load_model(
                os.path.join(config.model_dir, f"stage{stage}", "model.keras")
            )
            counts[stage] = lq.models.ModelProfile(model).weight_count(1)
        assert counts[1] == 0 and counts[2] > 0

    def test_stage2_starts_from_stage1_weights(self, finished_run, tmp_path):
        config, _ = finished_run
        # A rerun of a finished run trains nothing and returns the same results.
        before = snapshot(config.model_dir)
        again = training.run(config)
        assert again[2]["val_top1"] == pytest.approx(finished_run[1][2]["val_top1"])
        after = snapshot(config.model_dir)
        assert {k: v for k, v in after.items() if "stage" in k} == {
            k: v for k, v in before.items() if "stage" in k
        }

    def test_stage2_alone_from_init_from(self, finished_run, tmp_path):
        config, _ = finished_run
        stage1_model = os.path.join(config.model_dir, "stage1", "model.keras")
        other = tiny_config(tmp_path, stage="2", epochs=1, init_from=stage1_model)
        results = training.run(other)
        assert list(results) == [2]


    def test_run_directory_of_another_recipe(self, finished_run):
        config, _ = finished_run
        before = snapshot(config.model_dir)
        other = TrainConfig(**{**config.to_json(), "learning_rate": 0.5})
        with pytest.raises(ValueError, match="different recipe.*learning_rate"):
            training.run(other)
        assert snapshot(config.model_dir) == before


class TestDistillation:
    def test_teacher_from_a_saved_model(self, tmp_path):
        teacher = tf.keras.Sequential([
            tf.keras.Input((28, 28, 1)), tf.keras.layers.Flatten(),
            tf.keras.layers.Dense(10, activation="softmax"),
        ])
        path = str(tmp_path / "teacher.keras")
        teacher.save(path)
        config = tiny_config(tmp_path, stage="1", teacher=path, epochs=2)
        results = training.run(config)
        assert 0.0 <= results[1]["val_top1"] <= 1.0
        assert results[1]["ff_ratio_mean"] >= 0.0


class TestBadInput:
    @pytest.mark.parametrize(
        "kwargs,match",
        [
            (dict(epochs=0), "`epochs`"),
            (dict(batch_size=-4), "`batch_size`"),
            (dict(model="resnet9000"), "`model`"),
            (dict(dataset="no_such_dataset"), "dataset"),
            (dict(stage="3"), "`stage`"),
            (dict(dataset="imagenet2012"), "ILSVRC2012_img_train.tar"),
        ],
    )
    def test_refused_before_writing(self, tmp_path, kwargs, match):
        config = tiny_config(tmp_path, data_dir=str(tmp_path / "tfds"), **kwargs)
        with pytest.raises(ValueError, match=match):
            training.run(config)
        assert not os.path.exists(config.model_dir)

    def test_stage2_without_stage1_says_how_to_make_one(self, tmp_path):
        config = tiny_config(tmp_path, stage="2")
        with pytest.raises(ValueError, match="--init_from=scratch"):
            training.run(config)
        assert not os.path.exists(config.model_dir)

    def test_init_from_another_architecture(self, tmp_path):
        other = tf.keras.Sequential([tf.keras.Input((28, 28, 1)), tf.keras.layers.Flatten(),
                                     tf.keras.layers.Dense(10)])
        path = str(tmp_path / "other.keras")
        other.save(path)
        config = tiny_config(tmp_path, stage="2", init_from=path)
        with pytest.raises(ValueError, match="another architecture"):
            training.run(config)
        assert not os.path.exists(config.model_dir)

    def test_corrupt_checkpoint(self, tmp_path):
        config = tiny_config(tmp_path, stage="1")
        ckpt = os.path.join(config.model_dir, "stage1", "checkpoints")
        os.makedirs(ckpt)
        with open(os.path.join(ckpt, "checkpoint"), "w") as f:
            f.write('model_checkpoint_path: "ckpt-1"\n')
        with open(os.path.join(ckpt, "ckpt-1.index"), "wb") as f:
            f.write(b"garbage")
        before = snapshot(config.model_dir)
        with pytest.raises(ValueError, match="corrupt"):
            training.run(config)
        assert snapshot(config.model_dir) == before


class TestCommandLine:
    @pytest.mark.parametrize("recipe", sorted(glob.glob(os.path.join(REPO, "flags", "*.cfg"))))
    def test_every_recipe_parses_into_a_valid_config(self, recipe, monkeypatch):
        from bnn_keras import train

        monkeypatch.chdir(REPO)
        with flagsaver.flagsaver():
            flags.FLAGS.unparse_flags()
            flags.FLAGS(["train", f"--flagfile={recipe}"])
            config = train.config_from_flags().validate()
        assert config.stages()

    def test_paper_recipe_values(self, monkeypatch):
        from bnn_keras import train

        monkeypatch.chdir(REPO)
        with flagsaver.flagsaver():
            flags.FLAGS.unparse_flags()
            flags.FLAGS(["train", "--flagfile=flags/reactnet_a_imagenet_stage2.cfg"])
            config = train.config_from_flags()
        assert config.stage == "2" and config.optimizer == "adam"
        assert config.scaled_learning_rate() == pytest.approx(1.25e-3)
        assert (config.weight_decay, config.stage2_weight_decay) == (5e-6, 0.0)
        assert config.epochs == 256

    def test_cli_error_is_one_line_and_nonzero(self, tmp_path):
        proc = subprocess.run(
            [sys.executable, "-m", "bnn_keras.train", "--stage=2",
             f"--model_dir={tmp_path / 'run'}"],
            capture_output=True, text=True, timeout=300, cwd=REPO,
        )
        assert proc.returncode != 0
        errors = [l for l in proc.stderr.splitlines() if l.startswith("bnn_keras.train: error:")]
        assert len(errors) == 1 and "--init_from" in errors[0]
        assert not os.path.exists(tmp_path / "run")


def _cli(model_dir, epochs):
    return [
        sys.executable, "-m", "bnn_keras.train", "--stage=1", f"--epochs={epochs}",
        "--model=reactnet18", "--width_multiplier=0.125", "--batch_size=32",
        "--steps_per_epoch=8", f"--model_dir={model_dir}",
    ]


def _rows(model_dir):
    with open(os.path.join(model_dir, "stage1", "metrics.csv")) as f:
        return f.read().strip().splitlines()[1:]


def test_sigkill_mid_epoch_then_rerun_resumes(tmp_path):
    """Kill -9 during epoch 2 of 3; the same command finishes epochs 2-3 only."""
    model_dir = str(tmp_path / "run")
    proc = subprocess.Popen(_cli(model_dir, 3), cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    first = os.path.join(model_dir, "stage1", "checkpoints", "ckpt-1.index")
    deadline = time.time() + 400
    while not os.path.exists(first) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert os.path.exists(first), proc.stderr.read() if proc.poll() is not None else "timeout"
    time.sleep(0.3)  # into epoch 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not os.path.exists(os.path.join(model_dir, "stage1", "result.json"))
    rows_before = _rows(model_dir)
    assert 1 <= len(rows_before) <= 2  # killed during epoch 2 (or just after it)

    resumed = subprocess.run(_cli(model_dir, 3), cwd=REPO, capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Resuming stage 1" in resumed.stderr
    rows = _rows(model_dir)
    assert [r.split(",")[0] for r in rows] == ["0", "1", "2"]
    assert rows[0] == rows_before[0]  # the finished epoch was kept, not redone
    with open(os.path.join(model_dir, "stage1", "result.json")) as f:
        result = json.load(f)
    assert result["epochs"] == 3

    # Within noise of an uninterrupted run of the same command.
    straight = str(tmp_path / "straight")
    subprocess.run(_cli(straight, 3), cwd=REPO, check=True, capture_output=True, timeout=600)
    with open(os.path.join(straight, "stage1", "result.json")) as f:
        reference = json.load(f)
    assert abs(result["val_top1"] - reference["val_top1"]) < 0.15


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


class TestDistributed:
    """The trainer under tf.distribute: one process with two CPUs, and two workers."""

    def test_mirrored_over_two_logical_cpus(self, tmp_path):
        config = tiny_config(tmp_path, distribution_strategy="mirrored")
        results = training.run(config)
        assert sorted(results) == [1, 2]
        assert training.make_strategy("mirrored").num_replicas_in_sync == 2
        for stage in (1, 2):
            assert 0.0 < results[stage]["ff_ratio_mean"] < 0.5
            assert -1.0 <= results[stage]["c2i"] <= 1.0
            assert os.path.exists(os.path.join(config.model_dir, f"stage{stage}", "model.keras"))
        # A second run in the same process, with other shapes: a new strategy per
        # run failed here with "Shape mismatch in the collective instance".
        other = TrainConfig(**{**TINY, "width_multiplier": 0.25, "stage": "1", "epochs": 2,
                               "model_dir": str(tmp_path / "other"),
                               "distribution_strategy": "mirrored"})
        assert 0.0 <= training.run(other)[1]["val_top1"] <= 1.0

    def test_multi_worker_two_processes_through_tf_config(self, tmp_path):
        cluster = {"worker": [f"localhost:{p}" for p in _free_ports(2)]}
        model_dir = str(tmp_path / "run")
        command = [
            sys.executable, "-m", "bnn_keras.train", "--stage=all", "--model=reactnet18",
            "--width_multiplier=0.125", "--batch_size=32", "--steps_per_epoch=2",
            "--epochs=1", f"--model_dir={model_dir}",
            "--distribution_strategy=multi_worker_mirrored",
        ]
        procs = []
        for index in range(2):
            task = {"cluster": cluster, "task": {"type": "worker", "index": index}}
            env = dict(os.environ, TF_CONFIG=json.dumps(task))
            logs = open(tmp_path / f"worker{index}.log", "w")
            procs.append(subprocess.Popen(command, cwd=REPO, env=env, stdout=logs,
                                          stderr=subprocess.STDOUT))
        try:
            codes = [p.wait(timeout=600) for p in procs]
        finally:
            for p in procs:
                p.kill()
        logs = [(tmp_path / f"worker{i}.log").read_text() for i in range(2)]
        assert codes == [0, 0], "\n".join(log[-3000:] for log in logs)
        # Worker 0 is the chief: it alone writes the run directory.
        for stage in (1, 2):
            d = os.path.join(model_dir, f"stage{stage}")
            assert os.path.exists(os.path.join(d, "model.keras"))
            with open(os.path.join(d, "result.json")) as f:
                assert 0.0 <= json.load(f)["val_top1"] <= 1.0
        assert all("Stage 2 done" in log for log in logs)
