#!/usr/bin/env bash
# The ferry call (docs/gpu.md), from the repository root, with .gpu/a carried: installs the wheels, leaves the first
# half of SmolLM2 in $HOME for the trend call, and runs the CUDA smoke test (experiments/gpu/ferry.py).
#   bash experiments/gpu/ferry_call.sh                    # timeout_s 120; the report goes to $OUT
set -uo pipefail
. .gpu/a/setup.sh
[ -f "$HOME/smollm2.part-a" ] || { echo "ferry_call.sh: .gpu/a/smollm2.part-a was not carried"; exit 4; }
python3 experiments/gpu/ferry.py "$@"
