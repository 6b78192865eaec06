#!/usr/bin/env bash
# Benchmark a Larq Compute Engine .tflite on a Raspberry Pi (64-bit OS) over ssh.
#
# Copies the model (and, with -b, LCE's lce_benchmark_model: the release asset
# lce_benchmark_model_aarch64 of LCE v0.16.0, the runtime that matches bnn_keras's
# converter) to the Pi through ssh itself (no scp needed), runs the benchmark, and
# prints the average latency on one line:
#
#   model.tflite: average latency 45.67 ms (ssh pi@raspberrypi.local, 4 threads)
#
# The full benchmark output goes to stderr when the run fails or has no timings.
set -euo pipefail

LCE_RELEASE_URL="https://github.com/larq/compute-engine/releases/tag/v0.16.0"
LCE_BINARY_URL="https://github.com/larq/compute-engine/releases/download/v0.16.0/lce_benchmark_model_aarch64"

usage() {
  cat <<EOF
Usage: $(basename "$0") [-b BINARY] [-t THREADS] [-r RUNS] [-d REMOTE_DIR] [-p PORT] [USER@]HOST MODEL.tflite

  -b BINARY      lce_benchmark_model_aarch64 on this machine, copied to the Pi
                 (default: \$LCE_BENCHMARK_BINARY; without it the Pi must already
                 have REMOTE_DIR/lce_benchmark_model)
  -t THREADS     inference threads (default: 4, the Pi 4/5's cores)
  -r RUNS        timed runs (default: 50)
  -d REMOTE_DIR  working directory on the Pi, relative to the home directory
                 (default: bnn_keras_bench)
  -p PORT        ssh port

The ssh program is \$SSH (default: ssh); it must log in without a password prompt
(keys or an agent: the script runs ssh with BatchMode=yes).
EOF
}

die() {  # die STATUS MESSAGE
  echo "$(basename "$0"): $2" >&2
  exit "$1"
}

# The average inference time in microseconds, from lce_benchmark_model's output:
#   TF >= 2.4: "Inference timings in us: Init: ..., First inference: ..., Warmup (avg): ..., Inference (avg): 63743.2"
#   older:     "Average inference timings in us: Warmup: ..., Init: ..., Inference: 80660.1"
# (large values are printed as 1.23457e+06).
parse_average_us() {
  sed -n -E \
    -e 's/.*Inference \(avg\): ([0-9.eE+-]+).*/\1/p' \
    -e 's/.*Average inference timings in us:.*Inference: ([0-9.eE+-]+).*/\1/p' | tail -n 1
}

SSH=${SSH:-ssh}
binary=${LCE_BENCHMARK_BINARY:-}
threads=4
runs=50
remote_dir=bnn_keras_bench
port=

while getopts ":b:t:r:d:p:h" opt; do
  case $opt in
    b) binary=$OPTARG ;;
    t) threads=$OPTARG ;;
    r) runs=$OPTARG ;;
    d) remote_dir=$OPTARG ;;
    p) port=$OPTARG ;;
    h) usage; exit 0 ;;
    :) usage >&2; die 2 "option -$OPTARG needs a value" ;;
    *) usage >&2; die 2 "unknown option -$OPTARG" ;;
  esac
done
shift $((OPTIND - 1))
[[ $# -eq 2 ]] || { usage >&2; die 2 "expected [USER@]HOST and MODEL.tflite, got $# arguments"; }
host=$1
model=$2

[[ -f $model ]] || die 2 "model not found: $model"
[[ -z $binary || -f $binary ]] || die 2 "benchmark binary not found: $binary (download lce_benchmark_model_aarch64 from $LCE_RELEASE_URL)"
[[ $threads =~ ^[1-9][0-9]*$ ]] || die 2 "-t THREADS must be a positive integer, got '$threads'"
[[ $runs =~ ^[1-9][0-9]*$ ]] || die 2 "-r RUNS must be a positive integer, got '$runs'"
[[ $remote_dir =~ ^[A-Za-z0-9._/-]+$ ]] || die 2 "-d REMOTE_DIR must be letters, digits and ._/-, got '$remote_dir'"
[[ -z $port || $port =~ ^[0-9]+$ ]] || die 2 "-p PORT must be a number, got '$port'"
[[ $host =~ ^[A-Za-z0-9._@:-]+$ ]] || die 2 "HOST must be [USER@]HOST, got '$host'"

name=$(basename "$model")
name=${name//[^A-Za-z0-9._-]/_}
ssh_cmd=("$SSH" -o BatchMode=yes)
[[ -z $port ]] || ssh_cmd+=(-p "$port")

arch=$("${ssh_cmd[@]}" "$host" "uname -m" | tr -d '\r')
[[ $arch == aarch64 ]] || die 1 "$host runs '$arch', not aarch64: install a 64-bit OS (Raspberry Pi OS 64-bit) for LCE's optimized kernels"

"${ssh_cmd[@]}" "$host" "mkdir -p '$remote_dir' && cat > '$remote_dir/$name'" < "$model"
if [[ -n $binary ]]; then
  "${ssh_cmd[@]}" "$host" \
    "cat > '$remote_dir/lce_benchmark_model' && chmod 755 '$remote_dir/lce_benchmark_model'" < "$binary"
elif ! "${ssh_cmd[@]}" "$host" "test -x '$remote_dir/lce_benchmark_model'"; then
  die 2 "$host has no $remote_dir/lce_benchmark_model: pass -b lce_benchmark_model_aarch64, or on the Pi run: wget $LCE_BINARY_URL -O $remote_dir/lce_benchmark_model && chmod +x $remote_dir/lce_benchmark_model"
fi

if ! output=$("${ssh_cmd[@]}" "$host" \
    "cd '$remote_dir' && ./lce_benchmark_model --graph='$name' --num_threads=$threads --num_runs=$runs" 2>&1); then
  printf '%s\n' "$output" >&2
  die 1 "lce_benchmark_model failed on $host (output above)"
fi
average_us=$(printf '%s\n' "$output" | tr -d '\r' | parse_average_us)
if [[ -z $average_us ]]; then
  printf '%s\n' "$output" >&2
  die 1 "no average latency in the benchmark output (above)"
fi

milliseconds=$(awk -v us="$average_us" 'BEGIN { printf "%.2f", us / 1000 }')
printf '%s: average latency %s ms (ssh %s, %s threads)\n' \
  "$(basename "$model")" "$milliseconds" "$host" "$threads"
