"""The README's own first-training sequence, typed as a new user types it on a fresh clone:
`make prototxt`, `mrfnet convert --out data`, then `caffe train -solver
models/mrfnet/solver.prototxt`, each a subprocess from the repository root with the venv's
bin/ first on PATH (what `source .venv/bin/activate` does). Nothing creates `results/mrfnet/`
beforehand: `caffe train` must make its snapshot folder itself (tools/caffe/fix_sources.sh
fix 4). Training is stopped the way a user stops it, with Ctrl-C (SIGINT), which `caffe train`
answers by writing a snapshot and exiting cleanly.

The test runs in a temporary copy of the repository (its files, without .venv, .git, data/ or
results/), so it can neither move nor overwrite a user's data/ and results/ nor disturb another
run in the checkout. The copy's .venv is a link to the project's venv; `make` is told not to redo
the `caffe` step there (`-o caffe`), which would link the venv's `caffe` command to the copy.
`make test` has done that step already."""
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

SOLVER = "models/mrfnet/solver.prototxt"
# not copied: what a fresh clone does not have (top level), and caches anywhere
LEFT_OUT = {".venv", ".git", "data", "results", "runs", "build", ".gpu"}


def _left_out(folder, names):
    top = Path(folder) == REPO
    return [n for n in names if (top and n in LEFT_OUT) or n in ("__pycache__", ".pytest_cache")
            or n.endswith(".egg-info")]


@pytest.fixture
def user_env(venv_bin):
    env = dict(os.environ)
    env["PATH"] = f"{venv_bin}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv_bin.parent)
    env.pop("GLOG_minloglevel", None)   # a user sees Caffe's own log
    return env


@pytest.fixture
def clone(tmp_path, venv_bin):
    """A copy of the repository as a fresh clone has it: no data/, no results/."""
    root = tmp_path / "repo"
    shutil.copytree(REPO, root, symlinks=True, ignore=_left_out)
    (root / ".venv").symlink_to(venv_bin.parent, target_is_directory=True)
    assert not (root / "data").exists() and not (root / "results").exists()
    return root


def _run(cmd, cwd, env, timeout):
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def _train_until_interrupted(cwd, env, timeout=600):
    """Start `caffe train`, wait for its first reported iteration, press Ctrl-C; return the log."""
    proc = subprocess.Popen(["caffe", "train", "-solver", SOLVER], cwd=cwd, env=env,
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


def test_make_prototxt_convert_then_caffe_train_as_the_readme_says(user_env, clone):
    snapshots = clone / "results" / "mrfnet"
    _run(["make", "-o", "caffe", "prototxt"], clone, user_env, timeout=1200)
    _run(["mrfnet", "prototxt", "--check"], clone, user_env, timeout=120)
    _run(["mrfnet", "convert", "--out", "data"], clone, user_env, timeout=600)
    assert (clone / "data" / "train_lmdb" / "data.mdb").is_file()
    assert (clone / "data" / "test_lmdb" / "data.mdb").is_file()
    assert not snapshots.exists()

    rc, log, interrupted = _train_until_interrupted(clone, user_env)
    assert interrupted, f"caffe train never reported iteration 0:\n{log[-3000:]}"
    assert rc == 0, f"caffe train exited {rc}:\n{log[-3000:]}"
    assert "Cannot write to snapshot prefix" not in log
    # batch 16 of 256x256 crops (blurred and sharp stacked), the paper's setting, read from the
    # committed train net
    assert "output data size: 16,6,256,256" in log, log[:6000]
    assert "Optimization stopped early" in log
    weights = sorted(snapshots.glob("deblur_mrfnet__iter_*.caffemodel"))
    states = sorted(snapshots.glob("deblur_mrfnet__iter_*.solverstate"))
    assert weights and states, f"no snapshot in {snapshots}:\n{log[-2000:]}"
    assert weights[0].stat().st_size > 1_000_000   # ~16 MB of float weights, not an empty file
