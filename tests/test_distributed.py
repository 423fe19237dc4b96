"""Data parallelism with accelerate on CPU (gloo): two processes take the same optimizer step as one process on
the same global batch, and a two-process checkpoint resumes in one process."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import PATIENCE_S, wait_until

HERE = Path(__file__).resolve().parent
torchrun = shutil.which("torchrun")
pytestmark = pytest.mark.skipif(torchrun is None, reason="torchrun (torch's launcher) is not on PATH")


def launch(n, *args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("WORLD_SIZE", None)
    cmd = [torchrun, "--nproc_per_node", str(n), "--master_port", str(29500 + os.getpid() % 1000), *args]
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=PATIENCE_S)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_two_processes_take_the_single_process_step(tmp_path):
    algos = "asymre,grpo,topr"
    subprocess.run([sys.executable, str(HERE / "dist_worker.py"), str(tmp_path / "one"), algos], check=True,
                   timeout=PATIENCE_S, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    launch(2, str(HERE / "dist_worker.py"), str(tmp_path / "two"), algos, cwd=tmp_path)
    one = torch.load(tmp_path / "one" / "updates-1.pt", weights_only=False)
    two = torch.load(tmp_path / "two" / "updates-2.pt", weights_only=False)
    for algo in algos.split(","):
        (u1, m1), (u2, m2) = one[algo], two[algo]
        assert m1["world_size"] == 1 and m2["world_size"] == 2
        assert any(u.abs().max() > 1e-4 for u in u1)  # the step moved the adapter
        assert all(torch.allclose(a, b, atol=1e-6, rtol=1e-5) for a, b in zip(u1, u2)), algo
        for k in ("reward_mean", "adv_mean", "entropy", "loss"):
            assert m1[k] == pytest.approx(m2[k], rel=1e-5, abs=1e-6), (algo, k)


def test_a_two_process_checkpoint_resumes_in_one_process(tmp_path):
    """Two processes train until SIGTERM (all stop at one step boundary and save); the same command in one process
    resumes from that checkpoint and finishes. The run is long (100 steps of a few tens of ms) so that the signal,
    sent after the third logged step, lands with seconds to spare however fast the machine is."""
    import signal

    out, STEPS = tmp_path / "run", 100
    args = ["--model", "tiny", "--n-train", "16", "--eval-n", "4", "--group-size", "4", "--prompts-per-step", "2",
            "--max-new-tokens", "8", "--steps", str(STEPS), "--checkpoint-every", "1", "--out", str(out),
            "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [torchrun, "--nproc_per_node", "2", "--master_port", str(29600 + os.getpid() % 1000), "-m", "banditlab",
           "llm", "train", *args]
    p = subprocess.Popen(cmd, cwd=HERE.parent, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    metrics = out / "metrics.jsonl"
    wait_until(lambda: metrics.exists() and len(metrics.read_text().splitlines()) >= 3, p, "three logged steps",
               every=0.1)
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=PATIENCE_S)
    rows = [json.loads(l) for l in metrics.read_text().splitlines()]
    stopped = rows[-1]["step"]
    assert 2 <= stopped < STEPS and all(r["world_size"] == 2 for r in rows)
    assert json.loads((out / "config.json").read_text())["world_size"] == 2
    from banditlab.cli.app import main

    with pytest.raises(SystemExit) as e:  # the same command, one process
        main(["llm", "train", "--resume", *args])
    assert e.value.code == 0
    rows = [json.loads(l) for l in metrics.read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(STEPS + 1))
    assert {r["world_size"] for r in rows[stopped + 1:]} == {1}
