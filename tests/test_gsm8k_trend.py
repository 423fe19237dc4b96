"""The GSM8K δV trend's pipeline (experiments/reproduce/llm-asymre-gsm8k.py, experiments/gpu/gsm8k_trend_*.py),
rehearsed on CPU with the tiny model on the shipped GSM8K slices: screening → runs → pack → collect → figure."""

import json
import sys
import tarfile
import time

import pytest

from banditlab import reproduce as R
from banditlab.cli import main as cli

sys.path.insert(0, str(R.ROOT / "experiments" / "gpu"))
import gsm8k_trend_call as call  # noqa: E402
import gsm8k_trend_collect as collect  # noqa: E402

from banditlab_llm.screen import pool_of, read_counts  # noqa: E402


def _toml(cfg: dict) -> str:
    """The flat TOML of an experiment config (scalars and lists, then one level of tables)."""
    val = lambda v: json.dumps(v, ensure_ascii=False) if not isinstance(v, bool) else str(v).lower()
    lines = [f"{k} = {val(v)}" for k, v in cfg.items() if not isinstance(v, dict)]
    for k, v in cfg.items():
        if isinstance(v, dict):
            lines += [f"[{k}]"] + [f"{json.dumps(kk, ensure_ascii=False)} = {val(vv)}" for kk, vv in v.items()]
    return "\n".join(lines) + "\n"


def test_pool_keeps_the_problems_with_mixed_outcomes(tmp_path):
    f = tmp_path / "screen-train.jsonl"
    f.write_text("".join(json.dumps({"index": i, "successes": s, "k": 8}) + "\n" for i, s in enumerate([0, 3, 8, 1]))
                 + '{"index": 4, "succ')  # the last line cut off when a device call ended
    counts = read_counts(f)
    assert counts == {0: 0, 1: 3, 2: 8, 3: 1}
    p = pool_of(counts, 8)
    assert p["index"] == [1, 3] and p["pass_rate"] == [0.375, 0.125] and p["never"] == 1 and p["always"] == 1
    assert p["mean_pass_rate_screened"] == pytest.approx(12 / 32) and p["mean_pass_rate_pool"] == pytest.approx(0.25)
    assert pool_of(counts, 8, "all")["index"] == [0, 1, 2, 3]


def test_plot_only_without_data_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli(["reproduce", "llm-asymre-gsm8k", "--plot-only", "--figures", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and "--plot-only" in err and len(err.splitlines()) == 1
    assert not any(tmp_path.iterdir())


def _part(path, members: dict) -> None:
    """A packed part holding `members` {name: bytes}."""
    import io

    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_collect_unpacks_into_a_data_folder_of_any_name_and_refuses_bad_parts_whole(tmp_path):
    """The device's data folder and the local one need not share a name; a part with two top folders, a path out
    of the folder or bytes that are no tar is refused in one line, before anything is written."""
    got = tmp_path / "got"
    got.mkdir()
    _part(got / "gsm8k-trend-part1.tar.gz", {"llm-asymre-gsm8k/runs.json": b"[]",
                                             "llm-asymre-gsm8k/a-s0/metrics.jsonl": b"{}\n"})
    data = tmp_path / "elsewhere" / "my-data"
    assert collect.main([str(got), "--data", str(data)]) == 0
    assert (data / "runs.json").read_bytes() == b"[]" and (data / "a-s0" / "metrics.jsonl").exists()
    for bad in ({"x/runs.json": b"[]", "y/runs.json": b"[]"}, {"x/ok": b"1", "x/../../escape": b"1"}, b"not a tar"):
        fresh = tmp_path / "fresh" / "d"
        (got / "gsm8k-trend-part1.tar.gz").unlink()
        if isinstance(bad, bytes):
            (got / "gsm8k-trend-part1.tar.gz").write_bytes(bad)
        else:
            _part(got / "gsm8k-trend-part1.tar.gz", bad)
        with pytest.raises(SystemExit) as e:
            collect.collect(got, fresh, pool_dest=tmp_path / "pool.json", echo=lambda *_: None)
        assert str(e.value).startswith("collect:") and "\n" not in str(e.value)
        assert not (tmp_path / "escape").exists() and not fresh.exists()


@pytest.mark.slow
def test_two_calls_then_plot_only(tmp_path, monkeypatch):
    """Call 1 screens and trains seed 0; its packed results, unpacked into a fresh tree, let call 2 skip what is
    done and finish seed 1; `reproduce --plot-only` then draws from the files alone."""
    monkeypatch.chdir(tmp_path)
    dev1, dev2, out1, out2 = tmp_path / "dev1" / "d", tmp_path / "dev2" / "d", tmp_path / "out1", tmp_path / "out2"
    assert call.main(["--part", "1", "--rehearse", "--out", str(out1), "--data", str(dev1)]) == 0
    with tarfile.open(out1 / "gsm8k-trend-part1.tar.gz") as tar:
        names = tar.getnames()
    assert not any(n.endswith(("checkpoint.pt", ".lock")) or "/adapter" in n for n in names)
    # the pool: every screened problem, with π₀'s pass rate from the screening file
    pool = json.loads((dev1 / "pool.json").read_text())
    counts = read_counts(dev1 / "screen-train.jsonl")
    assert pool["train"]["screened"] == len(counts) == 8 and pool["train"]["index"] == sorted(counts)
    assert pool["train"]["pass_rate"] == [counts[i] / 2 for i in sorted(counts)]
    assert pool["pi0_full_test"]["n"] == 6
    rows = (dev1 / "pool-train.jsonl").read_text().splitlines()
    shipped = (R.ROOT / "tests/data/gsm8k/train-sample.jsonl").read_text().splitlines()
    assert [json.loads(r)["question"] for r in rows] == [json.loads(shipped[i])["question"] for i in sorted(counts)]
    # the next device's tree holds only what came back
    assert collect.collect(out1, dev2, pool_dest=tmp_path / "pool.json", echo=lambda *_: None) == 2
    assert not (tmp_path / "pool.json").exists()  # a tiny-model pool is never offered for committing
    seed0 = sorted(dev2.glob("*-s0/metrics.jsonl"))
    before = {f: f.read_bytes() for f in seed0}
    time.sleep(0.01)
    assert call.main(["--part", "2", "--rehearse", "--out", str(out2), "--data", str(dev2)]) == 0
    assert {f: f.read_bytes() for f in seed0} == before  # finished runs were skipped
    for run in json.loads((dev2 / "runs.json").read_text()):
        m = [json.loads(x) for x in (dev2 / run["folder"] / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in m] == [0, 1, 2] and all("test_accuracy" in r for r in m)
        assert all({"reward_mean", "entropy", "ratio_min"} <= set(r) for r in m[1:])
        assert json.loads((dev2 / run["folder"] / "final.json").read_text())["n"] == 6
        assert json.loads((dev2 / run["folder"] / "config.json").read_text())["config"]["sync_interval"] == 2
    assert (dev2 / "DONE").exists() and (out2 / "llm-asymre-gsm8k.png").stat().st_size > 10_000
    table = (out2 / "llm-asymre-gsm8k.md").read_text()
    assert "| AsymRE δV = −0.1 | 2/2 |" in table and "| AsymRE δV = +0.1 | 2/2 |" in table
    # --plot-only from the files alone
    configs, figs = tmp_path / "configs", tmp_path / "figs"
    configs.mkdir()
    cfg = call.rehearsal_config(R.load_config("llm-asymre-gsm8k"))
    (configs / "llm-asymre-gsm8k.toml").write_text(_toml(cfg))
    (figs / "data").mkdir(parents=True)
    dev2.rename(figs / "data" / "llm-asymre-gsm8k")
    made = R.reproduce(["llm-asymre-gsm8k"], figs, plot_only=True, progress=False, configs=configs,
                       echo=lambda *_: None)
    assert figs / "llm-asymre-gsm8k.png" in made


@pytest.mark.slow
def test_jobs_run_as_processes_and_die_at_the_deadline(tmp_path):
    """Two jobs at once, each its own process: one screens, one fails (a missing file) and is reported; a job
    still running at the deadline is killed and reported as unfinished."""
    mod = call.experiment_module()
    shipped = str(R.ROOT / "tests/data/gsm8k/test-sample.jsonl")
    job = {"kind": "screen", "model": "tiny", "split": "test", "k": 2, "temperature": 1.0, "max_new_tokens": 4,
           "seconds": 60, "batch_problems": 2, "n": 2}
    jobs = {"ok": {**job, "path": shipped, "out": str(tmp_path / "ok.jsonl")},
            "bad": {**job, "path": str(tmp_path / "missing.jsonl"), "out": str(tmp_path / "bad.jsonl")}}
    left = mod.launch(jobs, tmp_path, 2, float("inf"), echo=lambda *_: None)
    assert left == ["bad"] and "missing.jsonl" in (tmp_path / "logs" / "bad.log").read_text()
    assert sorted(read_counts(tmp_path / "ok.jsonl")) == [0, 1]
    t0 = time.time()
    slow = {"slow": {**job, "path": shipped, "out": str(tmp_path / "slow.jsonl"), "n": None}}
    assert mod.launch(slow, tmp_path, 1, time.time() + 1.0, echo=lambda *_: None) == ["slow"]
    assert time.time() - t0 < 10
