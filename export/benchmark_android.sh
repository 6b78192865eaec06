#!/usr/bin/env bash
# Benchmark a Larq Compute Engine .tflite on an arm64 Android device over adb.
#
# Pushes LCE's lce_benchmark_model (the release asset lce_benchmark_model_android_arm64
# of LCE v0.16.0, the runtime that matches bnn_keras's converter) and the model to
# the device, runs the benchmark, and prints the average latency on one line:
#
#   model.tflite: average latency 12.34 ms (android emulator-5554, 4 threads)
#
# The full benchmark output goes to stderr when the run fails or has no timings.
set -euo pipefail

LCE_RELEASE_URL="https://github.com/larq/compute-engine/releases/tag/v0.16.0"

usage() {
  cat <<EOF
Usage: $(basename "$0") [-b BINARY] [-s SERIAL] [-t THREADS] [-r RUNS] [-d DEVICE_DIR] MODEL.tflite

  -b BINARY      lce_benchmark_model_android_arm64 on this machine
                 (default: \$LCE_BENCHMARK_BINARY, else ./lce_benchmark_model_android_arm64;
                 download it from $LCE_RELEASE_URL)
  -s SERIAL      adb device serial (default: \$ANDROID_SERIAL, else adb's only device)
  -t THREADS     inference threads (default: 4)
  -r RUNS        timed runs (default: 50)
  -d DEVICE_DIR  working directory on the device (default: /data/local/tmp/bnn_keras)

The adb program is \$ADB (default: adb).
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

ADB=${ADB:-adb}
binary=${LCE_BENCHMARK_BINARY:-./lce_benchmark_model_android_arm64}
serial=${ANDROID_SERIAL:-}
threads=4
runs=50
device_dir=/data/local/tmp/bnn_keras

while getopts ":b:s:t:r:d:h" opt; do
  case $opt in
    b) binary=$OPTARG ;;
    s) serial=$OPTARG ;;
    t) threads=$OPTARG ;;
    r) runs=$OPTARG ;;
    d) device_dir=$OPTARG ;;
    h) usage; exit 0 ;;
    :) usage >&2; die 2 "option -$OPTARG needs a value" ;;
    *) usage >&2; die 2 "unknown option -$OPTARG" ;;
  esac
done
shift $((OPTIND - 1))
[[ $# -eq 1 ]] || { usage >&2; die 2 "expected one MODEL.tflite, got $# arguments"; }
model=$1

[[ -f $model ]] || die 2 "model not found: $model"
[[ -f $binary ]] || die 2 "benchmark binary not found: $binary (download lce_benchmark_model_android_arm64 from $LCE_RELEASE_URL, or pass -b)"
[[ $threads =~ ^[1-9][0-9]*$ ]] || die 2 "-t THREADS must be a positive integer, got '$threads'"
[[ $runs =~ ^[1-9][0-9]*$ ]] || die 2 "-r RUNS must be a positive integer, got '$runs'"
[[ $device_dir =~ ^/[A-Za-z0-9._/-]+$ ]] || die 2 "-d DEVICE_DIR must be an absolute path of letters, digits and ._/-, got '$device_dir'"

name=$(basename "$model")
name=${name//[^A-Za-z0-9._-]/_}
adb_cmd=("$ADB")
[[ -z $serial ]] || adb_cmd+=(-s "$serial")

"${adb_cmd[@]}" shell mkdir -p "$device_dir" >/dev/null
"${adb_cmd[@]}" push "$binary" "$device_dir/lce_benchmark_model" >/dev/null
"${adb_cmd[@]}" push "$model" "$device_dir/$name" >/dev/null
"${adb_cmd[@]}" shell chmod 755 "$device_dir/lce_benchmark_model" >/dev/null

if ! output=$("${adb_cmd[@]}" shell "$device_dir/lce_benchmark_model" \
    --graph="$device_dir/$name" --num_threads="$threads" --num_runs="$runs" 2>&1); then
  printf '%s\n' "$output" >&2
  die 1 "lce_benchmark_model failed on the device (output above)"
fi
output=$(printf '%s\n' "$output" | tr -d '\r')  # old adb versions send CRLF
average_us=$(printf '%s\n' "$output" | parse_average_us)
if [[ -z $average_us ]]; then
  printf '%s\n' "$output" >&2
  die 1 "no average latency in the benchmark output (above)"
fi

milliseconds=$(awk -v us="$average_us" 'BEGIN { printf "%.2f", us / 1000 }')
printf '%s: average latency %s ms (android %s, %s threads)\n' \
  "$(basename "$model")" "$milliseconds" "${serial:-device}" "$threads"
