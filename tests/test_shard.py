"""Sharded sweeps: `--shard I/N` runs a block of the grid with the whole grid's random draws, and `banditlab
merge` joins the blocks into files equal to the unsharded run's."""

import pandas as pd
import pytest

from conftest import run_cli


@pytest.mark.parametrize("algo,mode,noise,behavior", [
    ("asymre", "exact", "bernoulli", "lag:5"), ("asymre", "sampled", "bernoulli", "fixed"),
    pytest.param("asymre", "sampled", "bernoulli", "lag:5", marks=pytest.mark.slow),
    pytest.param("grpo", "sampled", "bernoulli", "lag:5", marks=pytest.mark.slow),
    pytest.param("topr", "sampled", "gaussian", "lag:5", marks=pytest.mark.slow)])
def test_merged_shards_equal_the_unsharded_run(algo, mode, noise, behavior, tmp_path):
    """Sampled runs of one seed share their draws across baselines (`--pulls shared`), so a shard takes each
    of its runs' seed's draws; with a fixed behaviour they are summed from the seeds' cell counts."""
    base = ["sweep", "--algo", algo, "--mode", mode, "--noise", noise, "--arms", "12", "--contexts", "2",
            "--steps", "120", "--baseline", "-0.2:0.2:3", "--behavior", behavior, "--no-progress"]
    base += ["--seeds", "3"] if mode == "sampled" else []  # exact mode: one deterministic run per baseline
    assert run_cli([*base, "--out", str(tmp_path / "full")])[0] == 0
    n = 3 if mode == "sampled" else 2
    for i in range(1, n + 1):
        assert run_cli([*base, "--shard", f"{i}/{n}", "--out", str(tmp_path / f"s{i}")])[0] == 0
    shards = [str(tmp_path / f"s{i}") for i in range(n, 0, -1)]  # any order
    code, out, err = run_cli(["merge", *shards, "--out", str(tmp_path / "merged")])
    assert code == 0 and "J(π_T)" in out
    for f in ("summary.csv", "table.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "full" / f), pd.read_csv(tmp_path / "merged" / f),
                                      check_exact=True)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "full" / "steps.parquet"),
                                  pd.read_parquet(tmp_path / "merged" / "steps.parquet"), check_exact=True)


@pytest.mark.slow
def test_merge_refuses_incomplete_or_mixed_shards(tmp_path):
    base = ["sweep", "--arms", "5", "--steps", "20", "--seeds", "2", "--baseline", "-0.1,0.1", "--no-progress"]
    for i in (1, 2):
        assert run_cli([*base, "--shard", f"{i}/2", "--out", str(tmp_path / f"s{i}")])[0] == 0
    assert run_cli([*base, "--lr", "0.5", "--shard", "2/2", "--out", str(tmp_path / "other")])[0] == 0
    (tmp_path / "s1-link").symlink_to(tmp_path / "s1")
    import shutil

    shutil.copytree(tmp_path / "s1", tmp_path / "s1-copy")
    for shards, word in (([tmp_path / "s1"], "exactly once"), ([tmp_path / "s1", tmp_path / "other"], "different"),
                         ([tmp_path / "s1", tmp_path / "s1"], "same folder"),
                         ([tmp_path / "s1", tmp_path / "s1-link", tmp_path / "s2"], "same folder"),
                         ([tmp_path / "s1", tmp_path / "s1-copy", tmp_path / "s2"], "both shard 1/2")):
        code, _, err = run_cli(["merge", *map(str, shards), "--out", str(tmp_path / "m")])
        assert code == 2 and word in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m").exists()
    code, _, err = run_cli([*base, "--shard", "3/2", "--out", str(tmp_path / "bad")])
    assert code == 2 and "--shard" in err and not (tmp_path / "bad").exists()


def test_an_unfinished_merge_is_finished_by_the_same_command(tmp_path):
    """A merge stopped before DONE (a full disk) leaves a folder of the merged run's identity: the same command
    completes it; a complete merge is left as it is; a folder of another run is refused."""
    base = ["sweep", "--arms", "5", "--steps", "20", "--seeds", "2", "--baseline", "-0.1,0.1", "--no-progress"]
    for i in (1, 2):
        assert run_cli([*base, "--shard", f"{i}/2", "--out", str(tmp_path / f"s{i}")])[0] == 0
    merge = ["merge", str(tmp_path / "s1"), str(tmp_path / "s2"), "--out", str(tmp_path / "m")]
    assert run_cli(merge)[0] == 0
    table = (tmp_path / "m" / "table.csv").read_bytes()
    (tmp_path / "m" / "DONE").unlink()
    (tmp_path / "m" / "table.csv").unlink()
    assert run_cli(merge)[0] == 0
    assert (tmp_path / "m" / "DONE").exists() and (tmp_path / "m" / "table.csv").read_bytes() == table
    code, out, _ = run_cli(merge)
    assert code == 0 and "already complete" in out
    assert run_cli([*base, "--lr", "0.5", "--out", str(tmp_path / "other")])[0] == 0
    code, _, err = run_cli(["merge", str(tmp_path / "s1"), str(tmp_path / "s2"), "--out", str(tmp_path / "other")])
    assert code == 2 and "different run" in err and len(err.strip().splitlines()) == 1


def test_a_shard_table_names_the_shard_and_marks_a_baseline_it_holds_only_part_of(tmp_path):
    """4 seeds × 3 baselines in 2 shards: shard 1 holds runs 0–5, all of δV = −0.2 and 2 seeds of δV = 0."""
    code, out, _ = run_cli(["sweep", "--arms", "5", "--steps", "20", "--seeds", "4", "--baseline", "-0.2:0.2:3",
                            "--shard", "1/2", "--out", str(tmp_path / "s1"), "--no-progress"])
    rows = [line for line in out.splitlines() if line.lstrip().startswith(("-0.200", "+0.000"))]
    assert code == 0 and "2–4 seeds per baseline, shard 1/2" in out and len(rows) == 2
    assert "seed(s)" not in rows[0] and rows[1].endswith("2 seed(s)")
