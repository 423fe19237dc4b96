"""Reading files back safely: regular files only, a size limit, and never code.

    check_path(path, option)            a path the operating system can hold (length, depth) and that is UTF-8
                                        text (the run record names it), refused otherwise
    writable_target(path, option)       a file path the command will be able to write: absent or a regular
                                        file (not a folder, a symbolic link, a pipe, a socket or a device), under
                                        a writable folder (checked before the work, not after it)
    replaceable(path, option)           the check every write makes last (`folder.atomic_output`): a path that
                                        exists and is not a regular file is never replaced
    regular_file(path, option, limit)   a regular file under `limit` bytes; pipes, devices and folders are refused
                                        from `stat`, before anything opens them (a FIFO would block, /dev/zero
                                        would read forever)
    read_text(path, option, limit)      its UTF-8 text, read with the limit
    parse_json(text, where)             strict JSON: NaN/Infinity, numbers that overflow to ±inf (1e999), a key
                                        given twice, and text that cannot be encoded (a lone surrogate such as
                                        "\\ud800") are refused; every data file the tool reads goes through it
    read_json(path, option, limit)      read_text + parse_json
    read_json_lines(path, option, ...)  a JSON-lines file, each line through parse_json; a damaged line is refused
                                        naming it, except a last one cut short by a writer that died (`cut_last`)
    check_text(text, where)             text that encodes as UTF-8 (refused otherwise: a lone surrogate, or a
                                        command-line argument that was not UTF-8)
    cache_dir()                         where rebuildable files are kept: $BANDITLAB_CACHE, else ~/.cache/banditlab
    load_tensors(path, option, hint)    torch.load(weights_only=True): tensors, numbers, strings, lists, tuples and
                                        dicts only. A pickle that names any other global (a payload such as
                                        os.system) is refused by torch's restricted unpickler before it can run.

Every refusal is a `UsageError` whose one line names the option and the file.
"""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path

from banditlab.errors import UsageError

MiB = 2**20
TEXT_LIMIT = 64 * MiB          # configs, bandit files, JSONL datasets (GSM8K train is 4 MiB)
TENSOR_LIMIT = 64 * 2**30      # checkpoints and offline datasets
PATH_MAX, DEPTH_MAX = 4096, 256


def check_path(path, option: str) -> Path:
    """`path` as a Path, refused when it is longer or deeper than a file system holds."""
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if "\0" in text:
        raise UsageError(f"{option}: the path contains a NUL byte")
    check_text(text, f"{option}: the path")  # a name that is not UTF-8 could not be written into the run record
    if len(text) > PATH_MAX or len(Path(text).parts) > DEPTH_MAX:
        raise UsageError(f"{option}: path too long or too deep ({len(text)} characters, {len(Path(text).parts)} "
                         f"parts; at most {PATH_MAX} and {DEPTH_MAX})")
    return Path(text)


def _kind(mode: int) -> str:
    return ("a folder" if stat.S_ISDIR(mode) else "a symbolic link" if stat.S_ISLNK(mode) else
            "a named pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else
            "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")


def replaceable(path, option: str | None = None) -> Path:
    """`path`, refused when it exists and is not a regular file: an output is written beside it and renamed over
    it, which would replace a device node (/dev/null), a pipe or a symbolic link (and not its target) with a file."""
    p = Path(path)
    try:
        mode = os.lstat(p).st_mode
    except (FileNotFoundError, NotADirectoryError):  # absent (a parent that is a file is named by the caller)
        return p
    except OSError as err:
        raise UsageError(f"{option or 'output'}: cannot write {p}: {err.strerror or err}") from None
    if not stat.S_ISREG(mode):
        raise UsageError(f"{option or 'output'}: {p} is {_kind(mode)}, not a regular file; refusing to replace "
                         "it (give a new file name)")
    return p


def writable_target(path, option: str) -> Path:
    """`path` as a file the command can write at its end: absent or a regular file (`replaceable`), and the deepest
    folder of its parents that exists is a writable folder. Checked before the work, so an hour's bench is not
    lost to its last write."""
    p = check_path(path, option)
    if p.is_dir() and not p.is_symlink():
        raise UsageError(f"{option}: {p} is a folder; give a file name")
    replaceable(p, option)
    for d in p.parents:
        if d.exists():
            if not d.is_dir():
                raise UsageError(f"{option}: {d} is a file, not a folder")
            if not os.access(d, os.W_OK | os.X_OK):
                raise UsageError(f"{option}: cannot write in {d} (permission denied)")
            break
    return p


def regular_file(path, option: str, limit: int = TEXT_LIMIT) -> Path:
    p = check_path(path, option)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise UsageError(f"{option}: file not found: {p}") from None
    except OSError as err:
        raise UsageError(f"{option}: cannot read {p}: {err.strerror or err}") from None
    if stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{option}: {p} is a folder, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{option}: {p} is not a regular file (a pipe, socket or device); give a file")
    if st.st_size > limit:
        raise UsageError(f"{option}: {p} is {st.st_size / MiB:.0f} MiB, over the {limit / MiB:.0f} MiB limit")
    return p


def read_text(path, option: str, limit: int = TEXT_LIMIT) -> str:
    p = regular_file(path, option, limit)
    try:
        with open(p, "rb") as f:
            data = f.read(limit + 1)
    except OSError as err:
        raise UsageError(f"{option}: cannot read {p}: {err.strerror or err}") from None
    if len(data) > limit:
        raise UsageError(f"{option}: {p} grew past the {limit / MiB:.0f} MiB limit while being read")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{option}: {p} is not UTF-8 text") from None


class JSONRefused(ValueError):
    """A JSON document that parses in Python but is not data the tool accepts (the message says why)."""


def _unique_keys(pairs: list) -> dict:
    keys = [k for k, _ in pairs]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise JSONRefused(f"field {dup[0]!r} is given twice")
    return dict(pairs)


def _no_constant(name: str):
    raise JSONRefused(f"{name} is not a JSON value")


def _finite(text: str) -> float:
    x = float(text)
    if x in (float("inf"), float("-inf")):
        raise JSONRefused(f"the number {text[:40]} overflows (not a finite number)")
    return x


def _encodable(x) -> None:
    stack = [x]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            check_text(v, "")
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)


def check_text(text: str, where: str) -> str:
    """`text`, refused (UsageError naming `where`) when it cannot be encoded as UTF-8: a lone surrogate from a JSON
    escape, or a command-line argument or file name that was not UTF-8 (Python keeps those as surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        bad = text[err.start:err.end].encode("utf-8", "surrogateescape" if "\udc80" <= text[err.start] <= "\udcff"
                                             else "backslashreplace")
        raise UsageError(f"{where + ': ' if where else ''}text that is not valid UTF-8 ({bad!r} at character "
                         f"{err.start})") from None
    return text


def parse_json(text: str, where: str):
    """`text` as JSON, strictly (see the module's docstring); a refusal is a UsageError naming `where`."""
    import json

    try:
        value = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant, parse_float=_finite,
                           parse_int=lambda s: _finite(s) if len(s) > 300 else int(s))
        _encodable(value)
        return value
    except json.JSONDecodeError as err:
        raise UsageError(f"{where}: not valid JSON ({err.msg}, line {err.lineno} column {err.colno})") from None
    except RecursionError:
        raise UsageError(f"{where}: not valid JSON (nested too deeply)") from None
    except JSONRefused as err:
        raise UsageError(f"{where}: {err}") from None
    except UsageError as err:
        raise UsageError(f"{where}: {str(err)}") from None
    except ValueError as err:  # int() of a number with more than 4300 digits
        raise UsageError(f"{where}: {str(err)[:120]}") from None


def read_json(path, option: str, limit: int = TEXT_LIMIT):
    """The JSON document in the regular file `path` (read_text, then parse_json)."""
    return parse_json(read_text(path, option, limit), f"{option}: {path}")


def read_json_lines(path, option: str, limit: int = TEXT_LIMIT, cut_last: bool = False) -> list:
    """The values of a JSON-lines file, one per non-blank line, each through `parse_json` (naming the file and
    line when refused). With `cut_last`, a last line cut short is dropped: a file that a run appends to ends in a
    partial line, without its newline, when the run died mid-write; a complete line is read like any other."""
    text = read_text(path, option, limit)
    lines = text.splitlines()
    cut = not text.endswith("\n")  # only a line without its newline can have been cut short
    last = max((n for n, line in enumerate(lines, 1) if line.strip()), default=0) if cut else 0
    rows = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(parse_json(line, f"{option}: {path} line {n}"))
        except UsageError:
            if cut_last and n == last:
                break
            raise
    return rows


def load_tensors(path, option: str, hint: str = "delete it to start over"):
    """The tensors and plain data in a torch file; any other pickled object is refused without running it."""
    import pickle

    import torch

    p = regular_file(path, option, TENSOR_LIMIT)
    try:
        with warnings.catch_warnings():  # torch warns about old pickle protocols before refusing them
            warnings.simplefilter("ignore")
            return torch.load(p, weights_only=True)
    except pickle.UnpicklingError:
        raise UsageError(f"{option}: {p} holds pickled objects beyond tensors and plain data; refused without "
                         f"loading them ({hint})") from None
    except Exception as err:  # truncated, empty, random bytes
        raise UsageError(f"{option}: {p} is unreadable ({type(err).__name__}); {hint}") from None


def cache_dir() -> Path:
    """$BANDITLAB_CACHE, else ~/.cache/banditlab: files the tool can always rebuild (a dequantised model, the
    measured kernel choices). RuntimeError when neither it nor a home folder is known."""
    if os.environ.get("BANDITLAB_CACHE"):
        return Path(os.environ["BANDITLAB_CACHE"])
    home = os.path.expanduser("~")
    if home == "~":
        raise RuntimeError("no home folder: set BANDITLAB_CACHE")
    return Path(home) / ".cache" / "banditlab"
