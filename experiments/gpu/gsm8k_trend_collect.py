"""Bring a device call's packed results of the GSM8K δV trend back into the working tree (docs/llm-gsm8k.md).

    python experiments/gpu/gsm8k_trend_collect.py FILES_AT [--data figures/data/llm-asymre-gsm8k] [--draw DIR]

FILES_AT is the folder the `run` tool copied $OUT into. The newest gsm8k-trend-partP.tar.gz in it is unpacked over
the data folder, whatever either folder is named (files from the device win; runs finished in an earlier call
stay), so the next call's working tree carries them and skips what is done. A pool screened on the device with a
real model is copied to experiments/reproduce/llm-asymre-gsm8k.pool.json (commit it: later runs then skip the
screening).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
POOL = ROOT / "experiments" / "reproduce" / "llm-asymre-gsm8k.pool.json"


def collect(files_at: Path, data: Path, pool_dest: Path = POOL, echo=print) -> int:
    """Unpack the newest part; returns how many runs are DONE. Exit-worthy problems raise SystemExit(2)."""
    parts = sorted(Path(files_at).rglob("gsm8k-trend-part*.tar.gz"), key=lambda p: p.stat().st_mtime)
    if not parts:
        raise SystemExit(f"collect: no gsm8k-trend-part*.tar.gz under {files_at}")
    try:
        with tarfile.open(parts[-1]) as tar:
            members = tar.getmembers()
            tops = {Path(m.name).parts[0] for m in members if Path(m.name).parts}
            if len(tops) != 1:
                raise SystemExit(f"collect: {parts[-1]} holds {len(tops)} top folders, expected one (the device's "
                                 "data folder)")
            top = tops.pop()

            def into_data(m: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
                """The member moved from the device's data folder (whatever its name) into `data`, checked by
                tarfile's data filter (no absolute paths, links or files outside the destination)."""
                rel = Path(m.name).relative_to(top)
                return None if rel == Path(".") else tarfile.data_filter(m.replace(name=str(rel), deep=False), dest)

            for m in members:  # every member checked before anything is written
                into_data(m, str(data))
            data.mkdir(parents=True, exist_ok=True)
            tar.extractall(data, members=members, filter=into_data)
    except (tarfile.TarError, OSError, EOFError) as err:
        raise SystemExit(f"collect: cannot unpack {parts[-1]}: {' '.join(str(err).split())}") from None  # one line
    echo(f"unpacked {parts[-1].name} into {data}")
    pool = data / "pool.json"
    if pool.exists() and json.loads(pool.read_text())["model"] != "tiny" and not pool_dest.exists():
        shutil.copyfile(pool, pool_dest)
        echo(f"pool: {pool_dest.relative_to(ROOT) if pool_dest.is_relative_to(ROOT) else pool_dest} (commit it)")
    runs = json.loads((data / "runs.json").read_text()) if (data / "runs.json").exists() else []
    done = [r["folder"] for r in runs if (data / r["folder"] / "DONE").exists()]
    echo(f"{len(done)} of {len(runs)} listed runs done" + (": data/DONE present, `banditlab reproduce "
                                                           "llm-asymre-gsm8k --plot-only` draws the figure"
                                                           if (data / "DONE").exists() else ""))
    return len(done)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files_at", help="the folder the device call's $OUT files were copied into")
    ap.add_argument("--data", default=str(ROOT / "figures" / "data" / "llm-asymre-gsm8k"))
    ap.add_argument("--draw", default=None, help="also draw the figure and table of the runs so far into this folder")
    a = ap.parse_args(argv)
    try:
        collect(Path(a.files_at), Path(a.data))
        if a.draw:
            from gsm8k_trend_call import draw
            from banditlab.reproduce import load_config

            for f in draw(load_config("llm-asymre-gsm8k"), Path(a.data), Path(a.draw)):
                print(f)
    except SystemExit as err:
        print(err, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
