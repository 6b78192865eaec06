"""The README's examples run, and CI runs the README's test command."""

import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme():
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        return f.read()


def blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", readme(), flags=re.S)


def test_ci_runs_the_readme_test_command():
    commands = [l for l in blocks("bash")[0].splitlines() if l and not l.startswith("#")]
    assert len(commands) == 2
    assert commands[0].endswith("python -m bnn_keras.train --stage=all")
    test_command = commands[1].split(" && ", 2)[-1]
    assert test_command == 'pip install -e ".[test]" && pytest -q'
    with open(os.path.join(REPO, ".ci", "run"), encoding="utf-8") as f:
        assert test_command in f.read()


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_python_example_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = blocks("python")[index]
    namespace = {"print": lambda *args, **kwargs: None}
    exec(compile(code, f"README.md python block {index}", "exec"), namespace)
    if "results" in namespace:
        assert sorted(namespace["results"]) == [1, 2]
        assert os.path.exists(tmp_path / "runs" / "example" / "stage2" / "model.keras")
    if "history" in namespace:
        history = namespace["history"].history
        assert len(history["ff_ratio"]) == 2 and len(history["c2i"]) == 2
