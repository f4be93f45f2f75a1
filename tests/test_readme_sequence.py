"""The README's own first-training sequence, typed as a new user types it on a fresh clone:
`make prototxt`, `mrfnet convert --out data`, then `caffe train -solver
models/mrfnet/solver.prototxt`, each a subprocess from the repository root with the venv's
bin/ first on PATH (what `source .venv/bin/activate` does). Nothing creates `results/mrfnet/`
beforehand: `caffe train` must make its snapshot folder itself (tools/caffe/fix_sources.sh
fix 4). Training is stopped the way a user stops it, with Ctrl-C (SIGINT), which `caffe train`
answers by writing a snapshot and exiting cleanly.

The test runs in the checkout itself, so it moves a `data/` or `results/mrfnet/` that is already
there aside first and puts it back afterwards."""
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

SOLVER = "models/mrfnet/solver.prototxt"
SNAPSHOTS = REPO / "results" / "mrfnet"


@pytest.fixture
def user_env(venv_bin):
    env = dict(os.environ)
    env["PATH"] = f"{venv_bin}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv_bin.parent)
    env.pop("GLOG_minloglevel", None)   # a user sees Caffe's own log
    return env


@pytest.fixture
def clean_checkout():
    """data/ and results/mrfnet/ absent, as on a fresh clone; whatever was there comes back."""
    moved = []
    for path in (REPO / "data", SNAPSHOTS):
        if path.exists():
            aside = path.with_name(f"{path.name}.aside-{uuid.uuid4().hex[:8]}")
            path.rename(aside)
            moved.append((aside, path))
    results_existed = (REPO / "results").exists()
    try:
        yield
    finally:
        for path in (REPO / "data", SNAPSHOTS):
            shutil.rmtree(path, ignore_errors=True)
        if not results_existed:
            shutil.rmtree(REPO / "results", ignore_errors=True)
        for aside, path in moved:
            aside.rename(path)


def _run(cmd, env, timeout):
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def _train_until_interrupted(env, timeout=600):
    """Start `caffe train`, wait for its first reported iteration, press Ctrl-C; return the log."""
    proc = subprocess.Popen(["caffe", "train", "-solver", SOLVER], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, deadline, interrupted = [], time.monotonic() + timeout, False
    try:
        for line in proc.stdout:
            lines.append(line)
            if not interrupted and "Iteration 0, loss = " in line:
                proc.send_signal(signal.SIGINT)
                interrupted = True
            if time.monotonic() > deadline:
                break
        proc.wait(timeout=max(1, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, "".join(lines), interrupted


def test_make_prototxt_convert_then_caffe_train_as_the_readme_says(user_env, clean_checkout):
    _run(["make", "prototxt"], user_env, timeout=1200)
    _run(["mrfnet", "prototxt", "--check"], user_env, timeout=120)
    _run(["mrfnet", "convert", "--out", "data"], user_env, timeout=600)
    assert (REPO / "data" / "train_lmdb" / "data.mdb").is_file()
    assert (REPO / "data" / "test_lmdb" / "data.mdb").is_file()
    assert not SNAPSHOTS.exists()

    rc, log, interrupted = _train_until_interrupted(user_env)
    assert interrupted, f"caffe train never reported iteration 0:\n{log[-3000:]}"
    assert rc == 0, f"caffe train exited {rc}:\n{log[-3000:]}"
    assert "Cannot write to snapshot prefix" not in log
    # batch 16 of 256x256 crops (blurred and sharp stacked), the paper's setting, read from the
    # committed train net
    assert "output data size: 16,6,256,256" in log, log[:6000]
    assert "Optimization stopped early" in log
    weights = sorted(SNAPSHOTS.glob("deblur_mrfnet__iter_*.caffemodel"))
    states = sorted(SNAPSHOTS.glob("deblur_mrfnet__iter_*.solverstate"))
    assert weights and states, f"no snapshot in {SNAPSHOTS}:\n{log[-2000:]}"
    assert weights[0].stat().st_size > 1_000_000   # ~16 MB of float weights, not an empty file
