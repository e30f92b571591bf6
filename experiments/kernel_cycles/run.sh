#!/bin/bash
# Per-kernel instruction counts of CMSIS-NN's int8 kernels on a Cortex-M4, in the Unicorn emulator: an optional
# calibration tool; its output is committed as edgebench/devices/data/cmsis_nn_cortex_m4.json.
#   CMSIS_NN=/path/to/CMSIS-NN experiments/kernel_cycles/run.sh
# Needs gcc-arm-none-eabi + libnewlib-arm-none-eabi (apt) and `pip install unicorn capstone` (into a venv of its own
# here, so edgebench's environment does not need them). About 10 s after the build.
set -e
HERE="$(cd "$(dirname "$0")" && pwd)"
export BUILD="${BUILD:-/tmp/edgebench-kernel-cycles}"
[ -x "$BUILD/venv/bin/python" ] || { python3 -m venv "$BUILD/venv" && "$BUILD/venv/bin/pip" install -q unicorn capstone; }
"$HERE/build.sh"
"$BUILD/venv/bin/python" "$HERE/run_iss.py" "$HERE/../../edgebench/devices/data/cmsis_nn_cortex_m4.json"
