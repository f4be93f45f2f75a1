"""Route 1 for real: `mrfnet caffe-stages` runs the `caffe train` command line tool (CPU) on a
tiny LMDB, two loss-weight groups as two stages, and we read Caffe's own log back."""
import json
import subprocess
import sys

import numpy as np
import pytest

from solver.caffelog import parse
from solver.schedule import lr_at
from solver.synthetic import write_lmdb

ITERS, STEP, BASE_LR, PATHS = 60, 20, 1e-3, 2


@pytest.fixture(scope="module")
def staged_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("stages")
    # blur darkened to half: a degradation the tiny net learns within a few dozen steps
    train = write_lmdb(str(d / "train"), 16, 40, seed=3, gain=0.5)
    val = write_lmdb(str(d / "val"), 4, 40, seed=4, gain=0.5)
    groups = d / "groups.json"
    groups.write_text(json.dumps([{"start_fraction": 0.0, "weights": [1.0, 0.5]},
                                  {"start_fraction": 0.5, "weights": [0.5, 1.0]}]))
    out = d / "run"
    r = subprocess.run(
        [sys.executable, "-m", "mrfnet.cli", "caffe-stages", "--variant", "mrfnet", "--paths",
         str(PATHS), "--train-db", train, "--val-db", val, "--out", str(out), "--crop", "32",
         "--batch", "2", "--iters", str(ITERS), "--stepsize", str(STEP), "--base-lr",
         str(BASE_LR), "--val-every", "15", "--loss-groups", str(groups), "--seed", "1", "--display", "1"],
        capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    logs = [(out / f"stage{i}.log").read_text() for i in (1, 2)]
    return out, r, logs, [parse(t) for t in logs]


def test_stages_write_final_snapshots_and_chain_them(staged_run):
    out, r, logs, _ = staged_run
    half = ITERS // 2
    assert (out / "snapshots" / f"stage1_iter_{half}.caffemodel").exists()
    assert (out / "snapshots" / f"stage2_iter_{ITERS}.caffemodel").exists()
    # stage 2 resumed from stage 1's final solver state (default --chain snapshot)
    assert f"-snapshot snapshots/stage1_iter_{half}.solverstate" in r.stdout
    assert f"Resuming from snapshots/stage1_iter_{half}.solverstate" in logs[1]


def test_lr_follows_the_step_schedule_across_stages(staged_run):
    _, _, _, parsed = staged_run
    half = ITERS // 2
    assert sorted(parsed[0]["lr"]) == list(range(half))
    assert sorted(parsed[1]["lr"]) == list(range(half, ITERS))
    seen = {**parsed[0]["lr"], **parsed[1]["lr"]}
    for g, lr in seen.items():
        assert lr == pytest.approx(lr_at(g, BASE_LR, 0.5, STEP), rel=1e-5), g
    assert seen[STEP] == pytest.approx(seen[STEP - 1] / 2, rel=1e-5)
    assert seen[2 * STEP] == pytest.approx(seen[2 * STEP - 1] / 2, rel=1e-5)


def test_loss_goes_down_and_validation_reports_psnr(staged_run):
    _, _, _, parsed = staged_run
    half = ITERS // 2
    # the finest scale's raw EuclideanLoss (independent of the group's loss_weight)
    finest = [parsed[s]["train_outputs"][i][f"loss_r{PATHS}"]
              for s in (0, 1) for i in sorted(parsed[s]["train_outputs"])]
    assert len(finest) == ITERS
    assert np.mean(finest[-8:]) < 0.5 * np.mean(finest[:8])
    # stage 2 starts from trained weights, not from a fresh initialisation
    s2 = [parsed[1]["train_outputs"][i][f"loss_r{PATHS}"] for i in range(half, half + 3)]
    s1 = [parsed[0]["train_outputs"][i][f"loss_r{PATHS}"] for i in range(3)]
    assert np.mean(s2) < np.mean(s1)
    tests = parsed[1]["test"]
    assert tests and all({"psnr", "ssim"} <= set(v) for v in tests.values())


def test_weights_chaining_finetunes_from_the_previous_stage(tmp_path):
    """--chain weights: our Caffe build loads -weights (tools/caffe/fix_sources.sh fix 3), so
    stage 2 starts from stage 1's weights ("Finetuning from" in its log), not from scratch."""
    train = write_lmdb(str(tmp_path / "train"), 4, 32, seed=5)
    out = tmp_path / "run"
    r = subprocess.run(
        [sys.executable, "-m", "mrfnet.cli", "caffe-stages", "--paths", "2", "--train-db", train,
         "--out", str(out), "--crop", "32", "--batch", "2", "--iters", "8", "--chain", "weights",
         "--display", "1"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    log2 = (out / "stage2.log").read_text()
    assert "Finetuning from snapshots/stage1_iter_2.caffemodel" in log2
