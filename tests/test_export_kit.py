"""Tests of the on-device kit: `export/benchmark_android.sh` and `export/benchmark_rpi.sh`.

No phone and no Raspberry Pi here: stand-in `adb` and `ssh` programs go first on
PATH. They check every argument they receive (an unexpected call exits 97 with
the reason on stderr), keep what is pushed under a fake device directory, and
answer the benchmark run with canned `lce_benchmark_model` output, so the tests
see what a user sees: one line with the average latency, or an error.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

KIT = Path(__file__).resolve().parents[1] / "export"
ANDROID = KIT / "benchmark_android.sh"
RPI = KIT / "benchmark_rpi.sh"

# Output of lce_benchmark_model (TF 2.16's benchmark tool), trimmed.
TF216_OUTPUT = """\
INFO: STARTING!
INFO: Log parameter values verbosely: [0]
INFO: Num threads: [2]
INFO: Graph: [/data/local/tmp/bnn_keras/model.tflite]
INFO: Loaded model /data/local/tmp/bnn_keras/model.tflite
INFO: The input model file size (MB): 4.20518
INFO: Initialized session in 6.302ms.
INFO: count=50 first=35212 curr=30911 min=30702 max=31856 avg=30940.5 std=248
INFO: Inference timings in us: Init: 6302, First inference: 35212, Warmup (avg): 31622.9, Inference (avg): 30940.5
"""
OUTPUTS = [
    # (benchmark output, milliseconds printed)
    (TF216_OUTPUT, "30.94"),
    ("Average inference timings in us: Warmup: 91471, Init: 4108, Inference: 80660.1\n", "80.66"),
    # Over a second, the C++ stream switches to scientific notation.
    (
        "INFO: Inference timings in us: Init: 9, First inference: 1.3e+06, Warmup (avg): "
        "1.3e+06, Inference (avg): 1.23457e+06\n",
        "1234.57",
    ),
]

_COMMON = """\
import json, os, pathlib, re, shutil, sys

root = pathlib.Path(os.environ["STUB_ROOT"])
args = sys.argv[1:]
with open(root / "calls.jsonl", "a") as log:
    log.write(json.dumps([pathlib.Path(sys.argv[0]).name, *args]) + "\\n")


def fail(why):
    sys.stderr.write(f"stand-in {pathlib.Path(sys.argv[0]).name}: {why}: {args}\\n")
    sys.exit(97)


def benchmark(flags, graph_exists):
    if not graph_exists:
        fail("benchmark of a model that was not pushed")
    if flags.get("--num_threads") != os.environ["STUB_THREADS"]:
        fail("wrong --num_threads")
    if not flags.get("--num_runs", "").isdigit():
        fail("no --num_runs")
    sys.stdout.write(pathlib.Path(os.environ["STUB_OUTPUT"]).read_text())
    sys.exit(int(os.environ.get("STUB_EXIT", "0")))
"""

ADB_STUB = _COMMON + """
serial = os.environ.get("STUB_SERIAL")
if serial:
    if args[:2] != ["-s", serial]:
        fail("expected -s " + serial)
    args = args[2:]


def on_device(path):
    if not path.startswith("/data/local/tmp/"):
        fail("a path outside /data/local/tmp")
    return root / "device" / path.lstrip("/")


if args[:1] == ["push"] and len(args) == 3:
    source, target = args[1], on_device(args[2])
    if not os.path.isfile(source):
        fail("push of a missing file")
    if not target.parent.is_dir():
        fail("push into a missing directory")
    shutil.copyfile(source, target)
elif args[:3] == ["shell", "mkdir", "-p"] and len(args) == 4:
    on_device(args[3]).mkdir(parents=True, exist_ok=True)
elif args[:3] == ["shell", "chmod", "755"] and len(args) == 4:
    if not on_device(args[3]).is_file():
        fail("chmod of a missing file")
elif args[:1] == ["shell"] and len(args) > 1 and args[1].endswith("/lce_benchmark_model"):
    if not on_device(args[1]).is_file():
        fail("run of a benchmark binary that was not pushed")
    if not all(a.startswith("--") and "=" in a for a in args[2:]):
        fail("a benchmark argument that is not --flag=value")
    flags = dict(a.split("=", 1) for a in args[2:])
    benchmark(flags, on_device(flags.get("--graph", "/data/local/tmp/?")).is_file())
else:
    fail("unexpected arguments")
"""

SSH_STUB = _COMMON + """
options = []
while args and args[0].startswith("-"):
    if args[0] not in ("-o", "-p") or len(args) < 2:
        fail("unknown option")
    options.append((args[0], args[1]))
    args = args[2:]
if ("-o", "BatchMode=yes") not in options:
    fail("ssh without BatchMode=yes (it could hang on a password prompt)")
if os.environ.get("STUB_PORT") and ("-p", os.environ["STUB_PORT"]) not in options:
    fail("wrong port")
if len(args) != 2 or args[0] != os.environ["STUB_HOST"]:
    fail("expected HOST and one remote command")
command, home = args[1], root / "home"
home.mkdir(exist_ok=True)
if command == "uname -m":
    print(os.environ.get("STUB_ARCH", "aarch64"))
elif m := re.fullmatch(r"mkdir -p '([^']+)' && cat > '([^']+)'", command):
    (home / m[1]).mkdir(parents=True, exist_ok=True)
    (home / m[2]).write_bytes(sys.stdin.buffer.read())
elif m := re.fullmatch(r"cat > '([^']+)' && chmod 755 '([^']+)'", command):
    if m[1] != m[2] or not (home / m[1]).parent.is_dir():
        fail("binary copied to an unexpected place")
    (home / m[1]).write_bytes(sys.stdin.buffer.read())
elif m := re.fullmatch(r"test -x '([^']+)'", command):
    sys.exit(0 if (home / m[1]).is_file() else 1)
elif m := re.fullmatch(
    r"cd '([^']+)' && ./lce_benchmark_model --graph='([^']+)' "
    r"--num_threads=([0-9]+) --num_runs=([0-9]+)", command
):
    if not (home / m[1] / "lce_benchmark_model").is_file():
        fail("run of a benchmark binary that is not on the Pi")
    benchmark({"--num_threads": m[3], "--num_runs": m[4]}, (home / m[1] / m[2]).is_file())
else:
    fail("unexpected remote command")
"""


@pytest.fixture
def stubs(tmp_path):
    """Writes the stand-ins; returns (environment for the scripts, stub root)."""
    bin_dir, root = tmp_path / "bin", tmp_path / "stub"
    bin_dir.mkdir()
    root.mkdir()
    for name, source in (("adb", ADB_STUB), ("ssh", SSH_STUB)):
        path = bin_dir / name
        path.write_text(f"#!{sys.executable}\n" + source)
        path.chmod(0o755)
    (root / "output.txt").write_text(TF216_OUTPUT)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "STUB_ROOT": str(root),
        "STUB_OUTPUT": str(root / "output.txt"),
        "STUB_THREADS": "2",
        "STUB_HOST": "pi@raspberrypi.local",
    }
    for variable in ("ANDROID_SERIAL", "LCE_BENCHMARK_BINARY", "ADB", "SSH"):
        env.pop(variable, None)
    return env, root


@pytest.fixture
def files(tmp_path):
    """A model and a benchmark binary to push (their bytes are checked on arrival)."""
    model = tmp_path / "model.tflite"
    model.write_bytes(b"TFL3 model bytes \x00\x01")
    binary = tmp_path / "lce_benchmark_model_any"
    binary.write_bytes(b"\x7fELF benchmark")
    return model, binary


def run(script, *args, env):
    return subprocess.run(
        ["bash", str(script), *map(str, args)], env=env, capture_output=True, text=True, timeout=60
    )


def calls(root):
    log = root / "calls.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


# --- Android over adb -------------------------------------------------------------------------


@pytest.mark.parametrize("output, milliseconds", OUTPUTS)
def test_android_prints_average_latency_on_one_line(stubs, files, output, milliseconds):
    env, root = stubs
    model, binary = files
    (root / "output.txt").write_text(output)
    env["STUB_SERIAL"] = "emulator-5554"
    proc = run(ANDROID, "-s", "emulator-5554", "-b", binary, "-t", 2, model, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (
        f"model.tflite: average latency {milliseconds} ms (android emulator-5554, 2 threads)\n"
    )
    device = root / "device" / "data/local/tmp/bnn_keras"
    assert (device / "model.tflite").read_bytes() == model.read_bytes()
    assert (device / "lce_benchmark_model").read_bytes() == binary.read_bytes()
    assert calls(root)[-1] == [
        "adb",
        "-s",
        "emulator-5554",
        "shell",
        "/data/local/tmp/bnn_keras/lce_benchmark_model",
        "--graph=/data/local/tmp/bnn_keras/model.tflite",
        "--num_threads=2",
        "--num_runs=50",
    ]


def test_android_uses_android_serial_and_benchmark_binary_from_environment(stubs, files):
    env, root = stubs
    model, binary = files
    env.update(ANDROID_SERIAL="R58M123", STUB_SERIAL="R58M123", LCE_BENCHMARK_BINARY=str(binary))
    proc = run(ANDROID, "-t", "2", "-r", "10", model, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.endswith("ms (android R58M123, 2 threads)\n")
    assert calls(root)[-1][-1] == "--num_runs=10"


def test_android_failed_benchmark_shows_its_output(stubs, files):
    env, root = stubs
    model, binary = files
    (root / "output.txt").write_text("ERROR: Didn't find op for builtin opcode 'CONV_2D'\n")
    env["STUB_EXIT"] = "1"
    proc = run(ANDROID, "-b", binary, "-t", 2, model, env=env)
    assert proc.returncode == 1 and proc.stdout == ""
    assert "Didn't find op for builtin opcode" in proc.stderr
    assert "lce_benchmark_model failed on the device" in proc.stderr


def test_android_output_without_timings_is_an_error(stubs, files):
    env, root = stubs
    model, binary = files
    (root / "output.txt").write_text("INFO: STARTING!\nINFO: Loaded model\n")
    proc = run(ANDROID, "-b", binary, "-t", 2, model, env=env)
    assert proc.returncode == 1 and proc.stdout == ""
    assert "no average latency" in proc.stderr and "INFO: STARTING!" in proc.stderr


BAD_ANDROID_ARGS = [
    # (arguments after -b BINARY, words of the error)
    (["missing.tflite"], "model not found"),
    (["-t", "0", "MODEL"], "THREADS must be a positive integer"),
    (["-d", "relative/dir", "MODEL"], "DEVICE_DIR must be an absolute path"),
    (["MODEL", "extra"], "expected one MODEL.tflite"),
]


@pytest.mark.parametrize("args, error", BAD_ANDROID_ARGS)
def test_android_bad_arguments_fail_before_touching_the_device(stubs, files, args, error):
    env, root = stubs
    model, binary = files
    args = [str(model) if a == "MODEL" else a for a in args]
    proc = run(ANDROID, "-b", binary, *args, env=env)
    assert proc.returncode == 2 and error in proc.stderr
    assert calls(root) == []


def test_android_missing_benchmark_binary_says_where_to_get_it(stubs, files, tmp_path):
    env, root = stubs
    model, _ = files
    proc = run(ANDROID, "-b", tmp_path / "nope", model, env=env)
    assert proc.returncode == 2
    assert "lce_benchmark_model_android_arm64" in proc.stderr and "v0.16.0" in proc.stderr
    assert calls(root) == []


# --- Raspberry Pi over ssh --------------------------------------------------------------------


@pytest.mark.parametrize("output, milliseconds", OUTPUTS)
def test_rpi_prints_average_latency_on_one_line(stubs, files, output, milliseconds):
    env, root = stubs
    model, binary = files
    (root / "output.txt").write_text(output)
    env["STUB_PORT"] = "2222"
    proc = run(RPI, "-b", binary, "-t", 2, "-p", 2222, "pi@raspberrypi.local", model, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (
        f"model.tflite: average latency {milliseconds} ms (ssh pi@raspberrypi.local, 2 threads)\n"
    )
    remote = root / "home" / "bnn_keras_bench"
    assert (remote / "model.tflite").read_bytes() == model.read_bytes()
    assert (remote / "lce_benchmark_model").read_bytes() == binary.read_bytes()
    assert calls(root)[-1] == [
        "ssh",
        "-o",
        "BatchMode=yes",
        "-p",
        "2222",
        "pi@raspberrypi.local",
        "cd 'bnn_keras_bench' && ./lce_benchmark_model --graph='model.tflite' "
        "--num_threads=2 --num_runs=50",
    ]


def test_rpi_without_binary_uses_the_one_on_the_pi_or_says_how_to_get_it(stubs, files):
    env, root = stubs
    model, _ = files
    proc = run(RPI, "-t", 2, "pi@raspberrypi.local", model, env=env)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "wget https://github.com/larq/compute-engine/releases/download/v0.16.0/" in proc.stderr
    (root / "home" / "bnn_keras_bench" / "lce_benchmark_model").write_bytes(b"on the Pi")
    proc = run(RPI, "-t", 2, "pi@raspberrypi.local", model, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("model.tflite: average latency 30.94 ms")


def test_rpi_refuses_a_32_bit_os(stubs, files):
    env, root = stubs
    model, binary = files
    env["STUB_ARCH"] = "armv7l"
    proc = run(RPI, "-b", binary, "-t", 2, "pi@raspberrypi.local", model, env=env)
    assert proc.returncode == 1 and "64-bit OS" in proc.stderr
    assert not (root / "home" / "bnn_keras_bench").exists()


def test_rpi_failed_benchmark_shows_its_output(stubs, files):
    env, root = stubs
    model, binary = files
    (root / "output.txt").write_text("ERROR: Encountered unresolved custom op: LceBconv2d\n")
    env["STUB_EXIT"] = "1"
    proc = run(RPI, "-b", binary, "-t", 2, "pi@raspberrypi.local", model, env=env)
    assert proc.returncode == 1 and proc.stdout == ""
    assert "unresolved custom op" in proc.stderr


def test_rpi_bad_arguments_fail_before_connecting(stubs, files):
    env, root = stubs
    model, binary = files
    for args, error in (
        (["-t", "four", "pi@raspberrypi.local", model], "THREADS must be a positive integer"),
        (["-d", "it's", "pi@raspberrypi.local", model], "REMOTE_DIR must be"),
        (["pi@raspberrypi.local"], "expected [USER@]HOST and MODEL.tflite"),
        (["pi@raspberrypi.local", "missing.tflite"], "model not found"),
    ):
        proc = run(RPI, "-b", binary, *args, env=env)
        assert proc.returncode == 2 and error in proc.stderr, (args, proc.stderr)
    assert calls(root) == []


def test_stand_ins_reject_unexpected_calls(stubs):
    # The tests above only mean something if the stand-ins do check their arguments.
    env, root = stubs
    adb = subprocess.run(["adb", "install", "app.apk"], env=env, capture_output=True, text=True)
    ssh = subprocess.run(
        ["ssh", "pi@raspberrypi.local", "uname -m"], env=env, capture_output=True, text=True
    )
    assert adb.returncode == 97 and "unexpected arguments" in adb.stderr
    assert ssh.returncode == 97 and "BatchMode=yes" in ssh.stderr


def test_scripts_print_usage():
    for script in (ANDROID, RPI):
        proc = subprocess.run(["bash", str(script), "-h"], capture_output=True, text=True)
        assert proc.returncode == 0 and proc.stdout.startswith("Usage: ")
