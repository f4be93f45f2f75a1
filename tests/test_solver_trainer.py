"""Route 2 for real: `mrfnet train` (pycaffe) on a tiny LMDB with P=2, crop 32, batch 2.

Log, curves and best model; SIGTERM then --resume (iteration, lr and loss-weight group carry on);
NaN stops with a message naming the last good snapshot; a wall-time budget stops cleanly.

The lr the trainer logs is its own computation (solver.schedule.lr_at); the lr Caffe actually
used is read from Caffe's own log ("Iteration N, lr = X", written by the solver's update when
GLOG lets INFO through) and compared with it, also after --resume and a new --base-lr.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from layers.loss_groups import default_groups, weights_at
from solver.errors import TrainingDiverged
from solver.runlog import read_log
from solver.schedule import lr_at
from solver.synthetic import synthetic_pair, write_lmdb
from solver.trainer import train

BASE = ["--variant", "mrfnet", "--paths", "2", "--crop", "32", "--batch", "2", "--base-lr", "1e-3",
        "--no-progress"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    import cv2
    d = tmp_path_factory.mktemp("trainer")
    train_db = write_lmdb(str(d / "train"), 16, 40, seed=11)
    pairs = d / "val_pairs"
    (pairs / "blur").mkdir(parents=True)
    (pairs / "sharp").mkdir()
    rng = np.random.default_rng(12)
    for i in range(3):
        blur, sharp = synthetic_pair(rng, 36)
        cv2.imwrite(str(pairs / "blur" / f"{i}.png"), blur)
        cv2.imwrite(str(pairs / "sharp" / f"{i}.png"), sharp)
    return d, train_db, str(pairs)


def mrfnet(*argv, **kw):
    return subprocess.run([sys.executable, "-m", "mrfnet.cli", *argv], capture_output=True,
                          text=True, timeout=180, **kw)


# Caffe's INFO log on stderr, where its solver prints the lr of each update it applies
CAFFE_LOG_ENV = dict(os.environ, GLOG_minloglevel="0", GLOG_logtostderr="1")


def caffe_lrs(log_text):
    """{iteration the update was applied at (0-based): lr} from Caffe's own log."""
    return {int(i): float(lr) for i, lr in
            re.findall(r"Iteration (\d+), lr = ([-+.\deE]+)", log_text)}


def assert_caffe_used_the_logged_lr(caffe_lr, recs):
    """Caffe's lr of update k (0-based) is the lr logged with iteration k + 1 (Caffe prints
    six significant digits)."""
    logged = {x["iteration"] - 1: x["lr"] for x in recs}
    assert caffe_lr and set(caffe_lr) <= set(logged), (sorted(caffe_lr), sorted(logged))
    for k, lr in caffe_lr.items():
        assert lr == pytest.approx(logged[k], rel=1e-5), k


def train_records(run):
    return [r for r in read_log(str(run / "train_log.jsonl")) if r["kind"] == "train"]


def test_train_writes_log_curves_best_model_and_run_json(data):
    d, train_db, pairs = data
    run = d / "run_basic"
    r = mrfnet("train", *BASE, "--train-db", train_db, "--val", pairs, "--out", str(run),
               "--iters", "12", "--stepsize", "5", "--val-every", "6", "--snapshot-every", "6",
               "--seed", "3", env=CAFFE_LOG_ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    recs = train_records(run)
    assert [x["iteration"] for x in recs] == list(range(1, 13))
    caffe_lr = caffe_lrs(r.stderr)
    assert sorted(caffe_lr) == list(range(12)), r.stderr[-3000:]  # display 1: every update
    assert_caffe_used_the_logged_lr(caffe_lr, recs)
    groups = default_groups(2)
    for x in recs:
        assert x["lr"] == pytest.approx(lr_at(x["iteration"] - 1, 1e-3, 0.5, 5))
        assert x["weights"] == weights_at(groups, (x["iteration"] - 1) / 12)
        assert np.isfinite(x["loss"]) and x["loss_r1"] > 0 and x["loss_r2"] > 0 and x["seconds"] > 0
    vals = [x for x in read_log(str(run / "train_log.jsonl")) if x["kind"] == "val"]
    assert [v["iteration"] for v in vals] == [0, 6, 12]
    assert all(0 < v["ssim"] <= 1 and v["samples"] == 3 for v in vals)
    best = json.loads((run / "best.json").read_text())
    assert best["psnr"] == max(v["psnr"] for v in vals)
    assert (run / "best.caffemodel").stat().st_size > 1000
    png = (run / "loss.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10000
    meta = json.loads((run / "run.json").read_text())
    assert meta["seed"] == 3 and meta["versions"]["caffe"] and "train" in meta["command"]
    assert (run / "snapshots" / "mrfnet_p2_iter_12.solverstate").exists()
    assert "done: iteration 12 of 12" in r.stdout
    assert_run_files_keep_their_format(run, meta)


# The fields of run.json and train_log.jsonl as runs of earlier versions wrote them: a run
# started by an earlier version resumes (--resume reads run.json's config and the log), and
# learning_curve reads logs of every version. Adding a field is fine; renaming one is not.
RUN_JSON_KEYS = ["command", "seed", "versions", "config", "schedule", "sessions"]
SESSION_KEYS = ["command", "started", "resume_from", "max_seconds", "gpu"]
RECORD_KEYS = {
    ("event", "start"): ["kind", "event", "iteration", "max_iter", "time", "state"],
    ("val", None): ["kind", "iteration", "psnr", "ssim", "best", "seconds", "samples",
                    "input_psnr", "input_ssim"],
    ("train", None): ["kind", "iteration", "lr", "loss", "loss_r1", "loss_r2", "weights", "group",
                      "seconds", "elapsed", "cpu"],
    ("event", "group"): ["kind", "event", "iteration", "group", "weights"],
    ("event", "done"): ["kind", "event", "iteration", "snapshot", "signal", "time"],
}


def assert_run_files_keep_their_format(run, meta):
    from solver.run_config import DEFAULTS, SESSION_KEYS as NOT_SAVED
    assert list(meta) == RUN_JSON_KEYS and list(meta["sessions"][0]) == SESSION_KEYS
    assert set(meta["config"]) == set(DEFAULTS) - set(NOT_SAVED)
    first = {}
    for rec in read_log(str(run / "train_log.jsonl")):
        first.setdefault((rec["kind"], rec.get("event")), list(rec))
    assert first == RECORD_KEYS


def test_sigterm_then_resume_continues_iteration_lr_and_group(data):
    d, train_db, _ = data
    run = d / "run_resume"
    total, step = 60, 7
    first_log = d / "run_resume_caffe1.log"   # a file: a full pipe would stall the run
    with open(first_log, "w") as err_file:
        proc = subprocess.Popen([sys.executable, "-m", "mrfnet.cli", "train", *BASE, "--train-db",
                                 train_db, "--out", str(run), "--iters", str(total), "--stepsize",
                                 str(step), "--snapshot-every", "50"],
                                stdout=subprocess.PIPE, stderr=err_file, text=True,
                                env=CAFFE_LOG_ENV)
    log = run / "train_log.jsonl"
    deadline = time.time() + 90
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and len(train_records(run)) >= 5:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    err = first_log.read_text()
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    stop = train_records(run)[-1]["iteration"]
    assert 5 <= stop < total, "the run finished before SIGTERM arrived: machine too slow?"
    assert (run / "snapshots" / f"mrfnet_p2_iter_{stop}.solverstate").exists()
    assert "interrupted" in out and "--resume" in out

    r = mrfnet("train", "--resume", str(run), "--no-progress", env=CAFFE_LOG_ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    events = [x for x in read_log(str(log)) if x["kind"] == "event" and x["event"] != "group"]
    assert [e["event"] for e in events] == ["start", "interrupted", "resume", "done"]
    assert events[2]["iteration"] == stop
    recs = train_records(run)
    assert [x["iteration"] for x in recs] == list(range(1, total + 1))
    groups = default_groups(2)
    for x in recs:  # the same lr and loss weights as one uninterrupted run
        assert x["lr"] == pytest.approx(lr_at(x["iteration"] - 1, 1e-3, 0.5, step))
        assert x["weights"] == weights_at(groups, (x["iteration"] - 1) / total)
    # and the lr Caffe itself applied, in both sessions (display 6: every sixth update)
    before, after = caffe_lrs(err), caffe_lrs(r.stderr)
    assert before and max(before) < stop and after and min(after) >= stop, (before, after)
    assert_caffe_used_the_logged_lr({**before, **after}, recs)
    meta = json.loads((run / "run.json").read_text())
    assert len(meta["sessions"]) == 2 and meta["sessions"][1]["resume_from"].endswith(
        f"_iter_{stop}.solverstate")


def test_resume_with_a_new_base_lr_reaches_caffe(data):
    """--resume from a snapshot with --base-lr: Caffe's solver applies the new base lr at the
    resumed iteration (the step schedule continued from there), as the log says."""
    d, train_db, _ = data
    run = d / "run_new_lr"
    r = mrfnet("train", *BASE, "--train-db", train_db, "--out", str(run), "--iters", "10",
               "--stepsize", "3", "--snapshot-every", "4", "--workers", "1", env=CAFFE_LOG_ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    first = caffe_lrs(r.stderr)
    assert sorted(first) == list(range(10)), r.stderr[-3000:]
    r = mrfnet("train", "--resume", str(run / "snapshots" / "mrfnet_p2_iter_4.solverstate"),
               "--base-lr", "4e-4", "--no-progress", "--workers", "1", env=CAFFE_LOG_ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    second = caffe_lrs(r.stderr)
    assert sorted(second) == list(range(4, 10)), r.stderr[-3000:]
    recs = train_records(run)
    assert [x["iteration"] for x in recs] == list(range(1, 11))
    assert_caffe_used_the_logged_lr({**{k: v for k, v in first.items() if k < 4}, **second}, recs)
    for k, lr in first.items():
        assert lr == pytest.approx(lr_at(k, 1e-3, 0.5, 3), rel=1e-5)
    for k, lr in second.items():
        assert lr == pytest.approx(lr_at(k, 4e-4, 0.5, 3), rel=1e-5)
    meta = json.loads((run / "run.json").read_text())
    assert meta["sessions"][1]["changed_on_resume"]["base_lr"] == [1e-3, 4e-4]


def test_nan_loss_stops_with_message_cli(data):
    d, train_db, _ = data
    run = d / "run_nan"
    r = mrfnet("train", *BASE[:-3], "--no-progress", "--base-lr", "1e30", "--train-db", train_db,
               "--out", str(run), "--iters", "20")
    assert r.returncode == 3, r.stdout + r.stderr
    assert "training diverged" in r.stderr and "smaller --base-lr" in r.stderr
    assert read_log(str(run / "train_log.jsonl"))[-1]["event"] == "diverged"


def test_nan_points_to_last_good_snapshot(data):
    d, train_db, _ = data
    run = d / "run_poison"

    def poison(info):  # corrupt the weights after update 5: the loss of step 6 is NaN
        if info["iteration"] == 5:
            info["net"].params["Conv1"][0].data[...] = np.nan

    with pytest.raises(TrainingDiverged) as exc:
        train({"train_db": train_db, "out": str(run), "paths": 2, "crop": 32, "batch": 2,
               "iters": 20, "snapshot_every": 2, "progress": False}, callback=poison)
    msg = str(exc.value)
    assert "iteration 6" in msg and "nan" in msg
    assert f"Last good snapshot: {run}/snapshots/mrfnet_p2_iter_4.solverstate" in msg
    assert not (run / "snapshots" / "mrfnet_p2_iter_6.solverstate").exists()


def test_wall_time_budget_stops_cleanly_with_snapshot(data):
    d, train_db, _ = data
    run = d / "run_budget"
    t = time.time()
    summary = train({"train_db": train_db, "out": str(run), "paths": 2, "crop": 32, "batch": 2,
                     "iters": 100000, "max_seconds": 3.0, "progress": False, "workers": 1})
    assert time.time() - t < 3.0 + 5.0
    assert summary["status"] == "budget" and 0 < summary["iterations"] < 100000
    assert summary["seconds"] <= 3.0 + 1.0
    assert os.path.exists(summary["last_snapshot"]) and os.path.exists(summary["final_model"])


def test_bad_input_is_a_clear_error(data, tmp_path):
    d, train_db, _ = data
    r = mrfnet("train", *BASE, "--train-db", str(tmp_path / "nope"), "--out", str(tmp_path / "r"))
    assert r.returncode == 2 and "error:" in r.stderr and "nope" in r.stderr
    r = mrfnet("train", *BASE[:4], "--crop", "33", "--batch", "2", "--train-db", train_db,
               "--out", str(tmp_path / "r2"), "--iters", "2")
    assert r.returncode == 2 and "--crop 33" in r.stderr
