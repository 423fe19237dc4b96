"""What an install puts on sys.path: banditlab and banditlab_llm (the folder llm/), never a top-level `llm`, which is
the import name of the llm command-line tool on PyPI (two distributions of one import name overwrite each other)."""

import importlib.util
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_llm_folder_installs_as_banditlab_llm_and_nothing_is_named_llm():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    tool = project["tool"]["setuptools"]
    assert {p.split(".")[0] for p in tool["packages"]} == {"banditlab", "banditlab_llm"}
    assert tool["package-dir"] == {"banditlab_llm": "llm"}
    targets = project["project"]["entry-points"]["banditlab.commands"].values()
    assert all(t.split(".")[0] == "banditlab_llm" for t in targets)
    spec = importlib.util.find_spec("banditlab_llm")
    assert spec is not None and Path(spec.origin).resolve().parent == (ROOT / "llm").resolve()
    assert (ROOT / "llm" / "archs" / "smollm2-135m.json").exists()
    assert importlib.util.find_spec("banditlab_llm.archs") is not None
