"""The environment is input too: every BANDITLAB_* variable is checked when a command starts (one line naming the
variable, exit 2, nothing written), and the kernel memo under BANDITLAB_CACHE is read through the safe reader, so
a pipe, a device or a huge file there is never opened or read whole, and is never replaced."""

import os
import stat
import subprocess
import sys

import pytest

from conftest import PATIENCE_S
from test_safety import one_line


def run(args, tmp_path, **env):
    full = {**os.environ, "OMP_NUM_THREADS": "1", "BANDITLAB_CACHE": str(tmp_path / "cache"), **env}
    p = subprocess.run([sys.executable, "-m", "banditlab", *args], capture_output=True, text=True, env=full,
                       timeout=PATIENCE_S)
    return p.returncode, p.stdout, p.stderr


SWEEP = ["sweep", "--baseline", "0", "--steps", "5", "--no-progress", "--threads", "1"]


@pytest.mark.parametrize("name, value", [("BANDITLAB_KERNEL", "bogus"), ("BANDITLAB_KERNEL", "nunpy"),
                                         ("BANDITLAB_PROGRESS", "yes"), ("BANDITLAB_PROGRESS_SECONDS", "-1"),
                                         ("BANDITLAB_CACHE", "/dev/null")])
def test_an_unknown_value_is_refused_naming_the_variable(name, value, tmp_path):
    code, _, err = run([*SWEEP, "--out", str(tmp_path / "run")], tmp_path, **{name: value})
    assert one_line(code, err) and err.startswith(f"banditlab: error: {name}:"), err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "huge", "not-json"])
def test_the_kernel_memo_is_read_safely_and_never_replaced_when_odd(kind, tmp_path):
    """A FIFO would block an unguarded read forever, /dev/zero would read until memory runs out, a 2 GiB sparse
    file would be read whole: each counts as no memo (the choice is measured again). What is not a regular file
    stays as it was; a regular file that is not a memo is replaced by one."""
    cache = tmp_path / "cache"
    cache.mkdir()
    memo = cache / "kernels.json"
    if kind == "fifo":
        os.mkfifo(memo)
    elif kind == "dev-zero":
        os.symlink("/dev/zero", memo)
    elif kind == "huge":
        with open(memo, "wb") as f:
            f.truncate(2 << 30)
    else:
        memo.write_text("{not json")
    before = os.lstat(memo)
    code, out, err = run([*SWEEP, "--out", str(tmp_path / "run")], tmp_path)
    assert code == 0, err
    assert (tmp_path / "run" / "DONE").exists()
    after = os.lstat(memo)
    if kind in ("fifo", "dev-zero"):
        assert stat.S_IFMT(after.st_mode) == stat.S_IFMT(before.st_mode)  # not replaced by a regular file
    if kind in ("huge", "not-json"):
        import json

        assert stat.S_ISREG(after.st_mode) and after.st_size < 1 << 20
        assert all(v in ("numpy", "torch") for v in json.loads(memo.read_text()).values())


def test_a_forced_kernel_is_used_and_a_known_value_runs(tmp_path):
    for value in ("numpy", "torch"):
        code, _, err = run([*SWEEP, "--out", str(tmp_path / value)], tmp_path, BANDITLAB_KERNEL=value)
        assert code == 0, err
