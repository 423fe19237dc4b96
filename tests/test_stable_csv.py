"""Data files survive a rerun on another machine: writing numbers that differ from the file's in their last digits
(the 1e-13 relative noise of another CPU's exp or BLAS) leaves the file byte-identical, so `banditlab reproduce ID
--force` does not rewrite committed data; a change at runfolder.DIGITS significant digits is written."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from banditlab.plumbing.folder import DIGITS, same_frame, write_arrays, write_csv, write_table

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = sorted((ROOT / "figures" / "data").glob("*/*.csv"))


def noisy(df: pd.DataFrame, rel: float, seed: int = 0) -> pd.DataFrame:
    """`df` with every float multiplied by (1 + rel·u), u uniform in [−1, 1]."""
    rng = np.random.default_rng(seed)
    out = df.copy()
    for c in out.columns:
        if out[c].dtype.kind == "f":
            out[c] = out[c] * (1 + rel * rng.uniform(-1, 1, len(out)))
    return out


def frame(n: int = 50) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame({"V": np.linspace(0, 0.5, n), "J": rng.uniform(0.5, 0.9, n), "loss": rng.normal(0, 1e-3, n),
                         "support": rng.integers(1, 100, n).astype(float), "seed": np.arange(n) % 4,
                         "mode": ["exact", "sampled"] * (n // 2), "diverged": False})


def test_the_same_frame_plus_noise_leaves_the_csv_byte_identical(tmp_path):
    path = tmp_path / "final.csv"
    assert write_csv(path, frame())
    before = path.read_bytes()
    for seed in range(3):
        assert not write_csv(path, noisy(frame(), 1e-13, seed))
        assert path.read_bytes() == before


def test_a_real_change_is_written(tmp_path):
    path = tmp_path / "final.csv"
    write_csv(path, frame())
    changed = frame()
    changed.loc[3, "J"] *= 1 + 1e-6
    assert write_csv(path, changed)
    assert pd.read_csv(path).J[3] == pytest.approx(changed.J[3], rel=1e-10)
    for edit in (lambda d: d.rename(columns={"J": "reward"}), lambda d: d.iloc[:-1], lambda d: d.assign(mode="exact")):
        new = edit(frame())  # another column name, one row fewer, another text
        assert write_csv(path, new)
        assert same_frame(pd.read_csv(path), new)
    path.write_text("not,a\ncsv")  # a damaged file is replaced
    assert write_csv(path, frame())


def test_csvs_hold_every_float_exactly_and_compare_at_ten_digits(tmp_path):
    path = tmp_path / "t.csv"
    df = pd.DataFrame({"x": [2 / 3, 0.1 + 0.2, 46.0, np.nan, -1234567.891234567, 1e-300], "n": range(6)})
    write_csv(path, df)
    assert path.read_text().splitlines()[:3] == ["x,n", "0.6666666666666666,0", "0.30000000000000004,1"]
    assert np.array_equal(pd.read_csv(path).x, df.x, equal_nan=True)  # a join on a value still matches
    assert DIGITS == 10
    assert not write_csv(path, df.assign(x=df.x * (1 + 10.0 ** -DIGITS)))  # agrees to 10 digits: left as it is
    assert write_csv(path, df.assign(x=df.x * (1 + 10.0 ** (2 - DIGITS))))  # differs in the 9th: written


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_committed_csvs_stay_byte_identical_when_rewritten_with_noise(path, tmp_path):
    copy = tmp_path / path.name
    shutil.copyfile(path, copy)
    assert not write_csv(copy, noisy(pd.read_csv(path), 1e-13))
    assert copy.read_bytes() == path.read_bytes()


def test_parquet_and_npz_stay_byte_identical_too(tmp_path):
    table, arrays = tmp_path / "steps.parquet", tmp_path / "policies.npz"
    assert write_table(table, frame())
    pi = np.random.default_rng(2).dirichlet(np.ones(5), size=(40, 3))
    assert write_arrays(arrays, TOPR=pi, every=20)
    before = table.read_bytes(), arrays.read_bytes()
    assert not write_table(table, noisy(frame(), 1e-13))
    assert not write_arrays(arrays, TOPR=pi * (1 + 1e-13), every=20)  # np.savez would stamp a new time
    assert (table.read_bytes(), arrays.read_bytes()) == before
    assert write_table(table, frame().assign(J=0.5))
    assert write_arrays(arrays, TOPR=pi, every=10)
    with np.load(arrays) as f:
        assert int(f["every"]) == 10 and np.array_equal(f["TOPR"], pi)
