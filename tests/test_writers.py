"""The one writer: no command replaces a path that exists and is not a regular file. Every output goes through
`folder.atomic_output` (write beside, rename over), which refuses a device node, a named pipe or a symbolic link
before writing, and every command checks its output paths first (`safeio.writable_target`, `folder.check_claim`),
so the refusal is one line naming the option, exit 2, and the node, the pipe, the link and the link's target are
left exactly as they were."""

import os
import stat

import pytest

from conftest import run_cli
from test_safety import one_line

KINDS = ["fifo", "device", "symlink"]


def make(kind: str, path, tmp_path):
    """A named pipe, a character device like /dev/null (needs CAP_MKNOD: skipped without it) or a symbolic link
    to a regular file, at `path`."""
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        try:
            os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("making a device node needs CAP_MKNOD (root)")
    else:
        (tmp_path / "target").write_text("keep\n")
        os.symlink(tmp_path / "target", path)


def unchanged(kind: str, path, tmp_path) -> bool:
    mode = os.lstat(path).st_mode
    if kind == "fifo":
        return stat.S_ISFIFO(mode)
    if kind == "device":
        return stat.S_ISCHR(mode)
    return stat.S_ISLNK(mode) and (tmp_path / "target").read_text() == "keep\n"


def finished_sweep(tmp_path):
    run = tmp_path / "run"
    code, _, err = run_cli(["sweep", "--baseline", "0", "--steps", "5", "--out", str(run), "--no-progress",
                            "--threads", "1"])
    assert code == 0, err
    return run


# (what, the option the refusal names, how to lay the trap and call the command)
def demo(tmp_path, kind):
    target = tmp_path / "page.html"
    make(kind, target, tmp_path)
    return target, ["demo", "--steps", "10", "--html", str(target)]


def demo_pdf(tmp_path, kind):
    """The figure's second file: both are checked before the work, so not even the PNG is written."""
    target = tmp_path / "fig.pdf"
    make(kind, target, tmp_path)
    return target, ["demo", "--steps", "10", "--out", str(tmp_path / "fig")]


def reproduce_png(tmp_path, kind):
    """A figure inside --figures: checked before the experiment runs or its data folder is made."""
    (tmp_path / "figs").mkdir()
    target = tmp_path / "figs" / "topr-naive-collapse.png"
    make(kind, target, tmp_path)
    return target, ["reproduce", "topr-naive-collapse", "--figures", str(tmp_path / "figs"), "--threads", "1"]


def plot(tmp_path, kind):
    run = finished_sweep(tmp_path)
    (run / "sweep.png").unlink()
    make(kind, run / "sweep.png", tmp_path)
    return run / "sweep.png", ["plot", str(run)]


def bench(tmp_path, kind):
    target = tmp_path / "bench.json"
    make(kind, target, tmp_path)
    return target, ["llm", "bench", "--model", "tiny", "--steps", "1", "--json", str(target), "--threads", "1"]


def sweep(tmp_path, kind):
    target = tmp_path / "out"
    make(kind, target, tmp_path)
    return target, ["sweep", "--baseline", "0", "--steps", "5", "--out", str(target), "--threads", "1"]


def train(tmp_path, kind):
    target = tmp_path / "out"
    make(kind, target, tmp_path)
    return target, ["llm", "train", "--model", "tiny", "--steps", "1", "--out", str(target), "--threads", "1"]


def reproduce(tmp_path, kind):
    target = tmp_path / "figs"
    make(kind, target, tmp_path)
    return target, ["reproduce", "topr-naive-collapse", "--figures", str(target), "--threads", "1"]


COMMANDS = {"demo --html": (demo, "--html"), "demo --out (its PDF)": (demo_pdf, "--out"),
            "reproduce --figures (a figure)": (reproduce_png, "--figures"), "plot RUN_DIR": (plot, "RUN_DIR"), "llm bench --json": (bench, "--json"),
            "sweep --out": (sweep, "--out"), "llm train --out": (train, "--out"),
            "reproduce --figures": (reproduce, "--figures")}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("command", COMMANDS)
def test_no_command_replaces_what_is_not_a_regular_file(command, kind, tmp_path):
    setup, option = COMMANDS[command]
    target, args = setup(tmp_path, kind)
    code, _, err = run_cli(args)
    if command in ("sweep --out", "llm train --out", "reproduce --figures") and kind == "symlink":
        # a link to a file where a folder is asked for: refused as a file, the link and its target untouched
        assert one_line(code, err) and option in err, err
    else:
        assert one_line(code, err) and option in err and "not a regular file" in err or \
            one_line(code, err) and option in err and "is a file, not a folder" in err, err
    assert unchanged(kind, target, tmp_path)
    if command == "demo --out (its PDF)":
        assert not (tmp_path / "fig.png").exists()
    if command == "reproduce --figures (a figure)":
        assert not (tmp_path / "figs" / "data").exists()


@pytest.mark.parametrize("kind", KINDS)
def test_the_writer_itself_refuses_before_writing(kind, tmp_path):
    """`atomic_output` checks the target last, for outputs inside a run folder that no option names."""
    from banditlab.errors import UsageError
    from banditlab.plumbing.folder import atomic_write

    target = tmp_path / "table.csv"
    make(kind, target, tmp_path)
    with pytest.raises(UsageError, match="not a regular file"):
        atomic_write(target, "x\n")
    assert unchanged(kind, target, tmp_path)
    assert not (tmp_path / "table.csv.tmp").exists()
    atomic_write(tmp_path / "plain.csv", "x\n")  # a regular file or none: written
    atomic_write(tmp_path / "plain.csv", "y\n")
    assert (tmp_path / "plain.csv").read_text() == "y\n"
