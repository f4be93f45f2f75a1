"""`mrfnet train --workers N` (solver/parallel.py): the batch split across processes gives the
gradient of the whole batch, the rank nets are cut right, and a failing worker is named."""
import gc
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import caffe
from caffe.proto import caffe_pb2
from google.protobuf import text_format

from solver import parallel as DP
from solver import runfiles as RF
from solver import schedule as S
from solver import solver_file as SF
from solver.errors import RunConfigError
from solver.synthetic import write_lmdb

CROP, BATCH, PATHS = 32, 4, 2


@pytest.fixture
def db(tmp_path):
    # one database per test: this Caffe's Data layers share one reader per (layer name, source)
    # within a process, so two live nets on one database would starve each other
    return write_lmdb(str(tmp_path / "train_lmdb"), 12, 40, seed=5)


def _net(path):
    net = caffe_pb2.NetParameter()
    text_format.Merge(open(path).read(), net)
    return net


def test_worker_count_must_divide_the_batch():
    assert DP.check_workers(2, 8) == 2
    with pytest.raises(RunConfigError, match="--batch 8 cannot be split evenly across --workers 3"):
        DP.check_workers(3, 8)
    with pytest.raises(RunConfigError, match="positive integer"):
        DP.check_workers(0, 8)
    assert DP.default_workers(8, cores=2) == 2
    assert DP.default_workers(9, cores=2) == 1   # no equal split of 9 in 2
    assert DP.default_workers(1, cores=4) == 1
    assert DP.default_workers(8, gpu=0, cores=2) == 1


def test_rank_nets_split_input_blobs_and_data_layers(db, tmp_path):
    fed = RF.write_train_net(tmp_path / "fed.prototxt", "mrfnet", PATHS, None, tmp_path, CROP,
                             BATCH, "python")
    part = DP.partition_net(_net(fed), 1, 2)
    shapes = [list(s.dim) for l in part.layer if l.type == "Input" for s in l.input_param.shape]
    assert shapes == [[BATCH // 2, 3, CROP, CROP]] * 2

    full = RF.write_train_net(tmp_path / "db.prototxt", "mrfnet", PATHS, db, tmp_path, CROP,
                              BATCH, "python")
    for rank in (0, 1):
        path = DP.write_rank_net(full, tmp_path / f"rank{rank}.prototxt", rank, 2)
        net = caffe.Net(str(path), caffe.TRAIN)
        assert net.blobs["data"].data.shape[0] == BATCH // 2
        assert net.blobs["pair"].data.shape[0] == BATCH     # the data layer reads whole batches
        del net
        gc.collect()
        layers = {l.name: l for l in _net(path).layer}
        assert list(layers["pair_other_ranks"].bottom) == [f"pair_part{1 - rank}"]


def _solver(tmp_path, net_path, name):
    sched = S.paper_schedule(BATCH, total_batch=BATCH, crop=CROP, epochs=1)
    params = SF.solver_params(sched, net_path, tmp_path / f"snap_{name}", snapshot=0,
                              random_seed=7, max_iter=10)
    # plain SGD without momentum: the update is lr x gradient, so weights compare gradients
    params = dict(params, type="SGD", momentum=0.0, base_lr=0.5, weight_decay=0.0)
    params.pop("momentum2", None)
    params.pop("delta", None)
    return caffe.get_solver(str(SF.write_solver(tmp_path / f"solver_{name}.prototxt", params)))


def _weights(net):
    return np.concatenate([b.data.ravel() for bl in net.params.values() for b in bl])


def test_two_processes_train_exactly_like_one(db, tmp_path):
    """Same LMDB batches, same initial weights: the weights after 3 steps of two half-batch
    processes equal those of one whole-batch process up to float rounding."""
    caffe.set_mode_cpu()
    full = RF.write_train_net(tmp_path / "train.prototxt", "mrfnet", PATHS, db, tmp_path, CROP,
                              BATCH, "python")
    one = _solver(tmp_path, full, "one")
    start = _weights(one.net)
    one.step(3)
    moved_one = _weights(one.net) - start
    del one
    gc.collect()   # its Data layer must let go of the database before the next net reads it
    ranks = [DP.write_rank_net(full, tmp_path / f"rank{r}.prototxt", r, 2) for r in (0, 1)]
    two = _solver(tmp_path, ranks[0], "two")
    assert np.array_equal(_weights(two.net), start)   # same seed, same fillers
    group = DP.WorkerGroup(two, [DP.worker_spec(two.net, ranks[1], 7)])
    try:
        two.step(3)
        assert len(group.outputs) == 1 and np.isfinite(group.outputs[0]["loss"])
    finally:
        rss = group.close()
    assert len(rss) == 1 and rss[0] > 10
    moved_two = _weights(two.net) - start
    assert np.abs(moved_one).max() > 1e-4          # the steps did change the weights
    # float32 rounding differs between one batch of 4 and two of 2 (BLAS blocking), and three
    # steps carry it on through ReLUs and max pooling, where it can flip a few routes: on an
    # Intel AVX-512 OpenBLAS the largest difference was 3.7e-5 of the largest move and 4e-5 of
    # the whole (AMD Zen 4: under 1e-6). A wrong gradient average would be off by ~50%.
    scale = np.abs(moved_one).max()
    np.testing.assert_allclose(moved_two, moved_one, rtol=1e-3, atol=1e-4 * scale)
    assert np.linalg.norm(moved_two - moved_one) <= 1e-3 * np.linalg.norm(moved_one)
    assert not os.path.exists(group.tmp)          # shared files removed


def test_a_failing_worker_is_named_with_its_error(tmp_path, db):
    caffe.set_mode_cpu()
    full = RF.write_train_net(tmp_path / "train.prototxt", "mrfnet", PATHS, db, tmp_path, CROP,
                              BATCH, "python")
    rank0 = DP.write_rank_net(full, tmp_path / "rank0.prototxt", 0, 2)
    solver = _solver(tmp_path, rank0, "bad")
    other = tmp_path / "other.prototxt"   # a net whose parameters differ from rank 0's
    RF.write_train_net(other, "mrfnet", 1, db, tmp_path, CROP, BATCH, "python")
    with pytest.raises(DP.WorkerError, match="training worker 1 failed: .*parameter shapes differ"):
        DP.WorkerGroup(solver, [{"net": str(other), "seed": 7, "loss_top": "loss",
                                 "scale_blobs": [], "fresh": None}])


# ------------------------------------------------------------------ `mrfnet train --workers`, as a user runs it
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMON = ["train", "--variant", "mrfnet", "--paths", "2", "--crop", "32", "--batch", "4",
          "--base-lr", "1e-3", "--no-progress", "--seed", "3"]


def mrfnet(*argv):
    return subprocess.run([sys.executable, "-m", "mrfnet.cli", *argv], capture_output=True,
                          text=True, timeout=300, cwd=REPO)


def _train_log(run):
    from solver.runlog import read_log
    return [r for r in read_log(str(run / "train_log.jsonl")) if r["kind"] == "train"]


def test_train_with_two_workers_matches_one_process_on_a_database(db, tmp_path):
    """The same LMDB batches in the same order: the whole-batch losses logged by two processes
    equal one process's (iteration 1 exactly up to rounding: same weights, same samples)."""
    logs = {}
    for n in (1, 2):
        out = tmp_path / f"w{n}"
        r = mrfnet(*COMMON, "--train-db", db, "--iters", "3", "--workers", str(n), "--out", str(out))
        assert r.returncode == 0, r.stderr
        logs[n] = _train_log(out)
        json.loads((out / "run.json").read_text())   # written whole
    assert (tmp_path / "w2" / "parallel" / "train_rank1.prototxt").exists()
    assert not (tmp_path / "w1" / "parallel").exists()
    assert "batch_size: 4" in (tmp_path / "w2" / "train.prototxt").read_text()  # for caffe train
    assert [r["iteration"] for r in logs[2]] == [1, 2, 3]
    assert logs[2][0]["loss"] == pytest.approx(logs[1][0]["loss"], rel=1e-5)
    assert logs[2][0]["loss_r1"] == pytest.approx(logs[1][0]["loss_r1"], rel=1e-5)
    for a, b in zip(logs[1][1:], logs[2][1:]):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-2)


def test_train_with_workers_on_fresh_photos_and_clear_errors(tmp_path):
    from data_prep import bundled
    from data_prep.imageio import write_image
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("coffee", "camera", "rocket"):
        write_image(photos / f"{name}.png", bundled.load(name))
    out = tmp_path / "fresh"
    r = mrfnet(*COMMON, "--train-images", str(photos), "--iters", "3", "--workers", "2",
               "--out", str(out))
    assert r.returncode == 0, r.stderr
    recs = _train_log(out)
    assert len(recs) == 3 and all(np.isfinite(x["loss"]) for x in recs)
    assert "Input" in (out / "parallel" / "train_rank1.prototxt").read_text()
    r = mrfnet(*COMMON, "--train-images", str(photos), "--iters", "1", "--workers", "3",
               "--out", str(tmp_path / "bad"))
    assert r.returncode == 2
    assert "--batch 4 cannot be split evenly across --workers 3" in r.stderr
    assert "Traceback" not in r.stderr


def test_ctrl_c_to_the_process_group_snapshots_and_stops_every_worker(db, tmp_path):
    """A terminal's Ctrl-C reaches every process of the group: rank 0 must still finish the
    step, snapshot and exit 130, and no worker may outlive it or crash it."""
    out = tmp_path / "ctrl_c"
    proc = subprocess.Popen([sys.executable, "-m", "mrfnet.cli", *COMMON, "--train-db", db,
                             "--iters", "100000", "--workers", "2", "--out", str(out)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (out / "train_log.jsonl").exists() and len(_train_log(out)) >= 3:
            break
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGINT, err
    assert "Traceback" not in err and "worker" not in err
    stop = _train_log(out)[-1]["iteration"]
    assert (out / "snapshots" / f"mrfnet_p2_iter_{stop}.solverstate").exists()
    with pytest.raises(ProcessLookupError):   # the group is empty: the workers are gone too
        for _ in range(50):
            os.killpg(proc.pid, 0)
            time.sleep(0.1)


def test_a_worker_dying_mid_run_saves_the_run_and_says_how_to_resume(db, tmp_path):
    out = tmp_path / "dies"
    proc = subprocess.Popen([sys.executable, "-m", "mrfnet.cli", *COMMON, "--train-db", db,
                             "--iters", "100000", "--workers", "2", "--out", str(out)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (out / "train_log.jsonl").exists() and len(_train_log(out)) >= 3:
            break
        time.sleep(0.1)
    workers = subprocess.run(["pgrep", "-P", str(proc.pid), "-f", "solver.parallel"],
                             capture_output=True, text=True).stdout.split()
    assert len(workers) == 1
    os.kill(int(workers[0]), signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert "training worker 1 stopped" in err and "Traceback" not in err
    assert f"continue with `mrfnet train --resume {out}`" in err
    stop = _train_log(out)[-1]["iteration"]
    assert (out / "snapshots" / f"mrfnet_p2_iter_{stop}.solverstate").exists()
    r = mrfnet("train", "--resume", str(out), "--iters", str(stop + 2), "--workers", "1",
               "--no-progress")
    assert r.returncode == 0, r.stderr
    assert _train_log(out)[-1]["iteration"] == stop + 2
