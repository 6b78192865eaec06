"""`python -m bnn_keras.experiments NAME`: run a sweep, then write its report.

Examples (from the repository root, where `flags/` is):

    python -m bnn_keras.experiments paper_analysis
    python -m bnn_keras.experiments paper_analysis --dataset=cifar10
    python -m bnn_keras.experiments paper_analysis --report_only
    python -m bnn_keras.experiments paper_analysis --schemes=adam_1step_wd0 \
        --seeds=0 --train_flag=--epochs=2 --root=/tmp/try --report_dir=/tmp/try

Stopped and started again, it skips finished runs and resumes unfinished ones.
"""

from __future__ import annotations

import os
import shlex
import sys

from absl import app, flags, logging

FLAGS = flags.FLAGS
flags.DEFINE_string("root", "", "Where the runs go (default: runs/NAME[_DATASET]).")
flags.DEFINE_string(
    "report_dir", "", "Where the report goes (default: docs/NAME[_DATASET])."
)
flags.DEFINE_string("flags_dir", "flags/analysis", "The directory of the runs' flagfiles.")
flags.DEFINE_integer("jobs", 2, "Training runs at a time.")
flags.DEFINE_list("schemes", None, "Only these schemes (flagfile stems).")
flags.DEFINE_list("seeds", None, "These seeds for every scheme (default: the experiment's).")
flags.DEFINE_string(
    "dataset", "", "Train on this dataset instead of the flagfiles' (e.g. cifar10)."
)
flags.DEFINE_string("data_dir", "", "tensorflow-datasets data directory, for every run.")
flags.DEFINE_multi_string(
    "train_flag", [], "A flag for every run, after its flagfile (repeatable)."
)
flags.DEFINE_bool("report_only", False, "Write the report from the finished runs only.")


def main(argv):
    if len(argv) != 2:
        raise app.UsageError("Give one experiment name: python -m bnn_keras.experiments NAME")
    from bnn_keras import data  # TensorFlow loads here, after flag parsing
    from bnn_keras.experiments import EXPERIMENTS, RunFailedError, run_all, write_report

    name = argv[1]
    if name not in EXPERIMENTS:
        return _error(f"`NAME` must be one of {sorted(EXPERIMENTS)}; received: {name!r}")
    experiment = EXPERIMENTS[name]
    try:
        seeds = None if FLAGS.seeds is None else [int(s) for s in FLAGS.seeds]
    except ValueError:
        return _error(f"`seeds` must be integers; received: seeds={FLAGS.seeds!r}")
    unknown = set(FLAGS.schemes or ()) - set(experiment.seeds)
    if unknown:
        return _error(
            f"`schemes` must be among {sorted(experiment.seeds)}; received: {sorted(unknown)}"
        )
    runs = experiment.runs(FLAGS.schemes, seeds)
    suffix = f"_{FLAGS.dataset}" if FLAGS.dataset else ""
    root = FLAGS.root or os.path.join("runs", name + suffix)
    report_dir = FLAGS.report_dir or os.path.join("docs", name + suffix)
    train_flags = list(FLAGS.train_flag)
    if FLAGS.data_dir:
        train_flags.append(f"--data_dir={FLAGS.data_dir}")
    if FLAGS.dataset:
        try:
            data.get_info(FLAGS.dataset, data_dir=FLAGS.data_dir or None)
        except (ValueError, FileNotFoundError) as e:
            return _error(f"`dataset` {FLAGS.dataset!r} cannot be used: {e}")
        train_flags.append(f"--dataset={FLAGS.dataset}")
    if not FLAGS.report_only:
        logging.info("%s: %d runs into %s", name, len(runs), os.path.abspath(root))
        try:
            run_all(
                runs, flags_dir=FLAGS.flags_dir, root=root, jobs=FLAGS.jobs, train_flags=train_flags
            )
        except (ValueError, RunFailedError) as e:
            return _error(str(e))
    # The command that trains the runs and writes this report (with finished runs
    # it only writes the report), so --report_only is left out.
    args = [a for a in sys.argv[1:] if a not in ("--report_only", "--report_only=true")]
    command = "python -m bnn_keras.experiments " + " ".join(shlex.quote(a) for a in args)
    try:
        path = write_report(experiment, root, report_dir, command=command, runs=runs)
    except ValueError as e:
        return _error(str(e))
    logging.info("Report: %s", path)
    return 0


def _error(message: str) -> int:
    sys.stderr.write(f"bnn_keras.experiments: error: {message}\n")
    return 2


if __name__ == "__main__":
    app.run(main)
