"""The paper's schedule (section IV.A) as solver numbers, and the solver files Caffe reads.

Solver files are parsed back with Caffe's own caffe_pb2 so a field Caffe would misread fails here.
"""
import math
import subprocess
import sys

import pytest

from caffe.proto import caffe_pb2
from google.protobuf import text_format

from solver import schedule as S
from solver import solver_file as SF
from solver.errors import ScheduleError
from solver.stages import stage_lr
from solver.synthetic import write_lmdb


def parse_solver(path):
    return text_format.Parse(open(path).read(), caffe_pb2.SolverParameter())


def net_batch(path):
    net = text_format.Parse(open(path).read(), caffe_pb2.NetParameter())
    return [l.data_param.batch_size for l in net.layer if l.type == "Data"]


@pytest.mark.parametrize("patches, batch, gpus, dataset", [
    (2103, 16, 4, "gopro"), (2103, 16, 1, "gopro"), (10000, 16, 2, "visdrone"), (17, 4, 4, "gopro")])
def test_schedule_from_dataset_size(patches, batch, gpus, dataset):
    s = S.paper_schedule(patches, dataset=dataset, total_batch=batch, gpus=gpus)
    epoch = math.ceil(patches / batch)
    epochs = {"gopro": 50, "visdrone": 70}[dataset]
    assert s["iterations_per_epoch"] == epoch
    assert s["max_iter"] == epochs * epoch
    assert s["stepsize"] == 10 * epoch
    assert s["batch_per_gpu"] * gpus == batch
    assert (s["type"], s["momentum"], s["momentum2"]) == ("Adam", 0.9, 0.999)
    assert (s["base_lr"], s["lr_policy"], s["gamma"]) == (1e-4, "step", 0.5)
    assert any(str(gpus) in line and "GPU" in line for line in s["explanation"]) or gpus == 1


def test_batch_not_divisible_by_gpus_is_an_error():
    with pytest.raises(ScheduleError, match="16 cannot be split evenly over 3 GPUs"):
        S.per_gpu_batch(16, 3)
    with pytest.raises(ScheduleError, match="positive integer"):
        S.iterations_per_epoch(0, 16)


def test_lr_halves_every_stepsize():
    assert S.lr_at(0, 1e-4, 0.5, 100) == 1e-4
    assert S.lr_at(99, 1e-4, 0.5, 100) == 1e-4
    assert S.lr_at(100, 1e-4, 0.5, 100) == 5e-5
    assert S.lr_at(250, 1e-4, 0.5, 100) == 2.5e-5


def test_later_stages_continue_the_single_run_lr_curve():
    sched = {"base_lr": 1e-4, "gamma": 0.5, "stepsize": 100}
    for start, end in [(0, 230), (230, 480), (480, 1000), (300, 301)]:
        base, steps = stage_lr(sched, start, end)
        for g in range(start, end):  # Caffe's step / multistep rule, per stage-local iteration
            local = g - start
            lr = base * 0.5 ** (local // 100) if steps is None else \
                base * 0.5 ** sum(1 for v in steps if local >= v)
            assert lr == pytest.approx(S.lr_at(g, 1e-4, 0.5, 100), rel=1e-12), (start, g)
    assert stage_lr(sched, 230, 480, restart=True) == (1e-4, None)


def test_solver_file_parses_with_the_papers_values(tmp_path):
    s = S.paper_schedule(2103, dataset="gopro", total_batch=16, gpus=4, val_size=111)
    p = SF.solver_params(s, "train.prototxt", "snapshots/x", test_net="val.prototxt",
                         solver_mode="GPU", random_seed=7)
    sp = parse_solver(SF.write_solver(tmp_path / "solver.prototxt", p, s["explanation"]))
    assert sp.type == "Adam" and sp.lr_policy == "step" and sp.solver_mode == sp.GPU
    assert sp.momentum == pytest.approx(0.9) and sp.momentum2 == pytest.approx(0.999)
    assert sp.base_lr == pytest.approx(1e-4) and sp.gamma == pytest.approx(0.5)
    assert sp.stepsize == 10 * math.ceil(2103 / 16) and sp.max_iter == 50 * math.ceil(2103 / 16)
    assert list(sp.test_net) == ["val.prototxt"] and list(sp.test_iter) == [math.ceil(111 / 4)]
    assert sp.test_interval == math.ceil(2103 / 16) and sp.random_seed == 7
    assert sp.train_net == "train.prototxt" and sp.snapshot_prefix == "snapshots/x"


@pytest.fixture(scope="module")
def tiny_dbs(tmp_path_factory):
    d = tmp_path_factory.mktemp("dbs")
    return write_lmdb(str(d / "train"), 40, 40, seed=1), write_lmdb(str(d / "val"), 6, 40, seed=2)


def run_cli(*argv):
    return subprocess.run([sys.executable, "-m", "mrfnet.cli", *argv], capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("chain", ["snapshot", "weights"])
def test_caffe_stages_dry_run_four_gpus(tiny_dbs, tmp_path, chain):
    train, val = tiny_dbs
    out = tmp_path / "run"
    r = run_cli("caffe-stages", "--variant", "mrfnet", "--paths", "2", "--train-db", train,
                "--val-db", val, "--out", str(out), "--crop", "32", "--batch", "16",
                "--gpus", "0,1,2,3", "--epochs", "20", "--dry-run", "--chain", chain)
    assert r.returncode == 0, r.stderr
    cmds = [l for l in r.stdout.splitlines() if l.startswith("caffe train")]
    assert len(cmds) == 4 and all("-gpu 0,1,2,3" in c for c in cmds)
    cmds = [c.split(" 2>&1")[0] for c in cmds]
    assert "-weights" not in cmds[0] and "-snapshot" not in cmds[0]
    assert "16 = 4 GPUs x 4 per GPU" in r.stdout
    epoch = math.ceil(40 / 16)
    total = 20 * epoch
    sps = [parse_solver(out / f"stage{i}_solver.prototxt") for i in range(1, 5)]
    assert all(sp.solver_mode == sp.GPU for sp in sps)
    assert sps[0].lr_policy == "step" and sps[0].stepsize == 10 * epoch
    if chain == "snapshot":  # global iteration counting, one 'step' lr curve
        assert sps[-1].max_iter == total
        assert [sp.max_iter for sp in sps] == sorted(sp.max_iter for sp in sps)
        assert all(sp.lr_policy == "step" and sp.stepsize == 10 * epoch for sp in sps)
    else:  # every stage counts from 0
        assert sum(sp.max_iter for sp in sps) == total
    for i in range(1, 5):
        assert net_batch(out / f"stage{i}_train.prototxt") == [4]
        if i < 4:  # the stage's final snapshot is what the next stage starts from
            final = f"snapshots/stage{i}_iter_{sps[i - 1].max_iter}"
            flag = "-snapshot " + final + ".solverstate" if chain == "snapshot" \
                else "-weights " + final + ".caffemodel"
            assert flag in cmds[i]
    script = (out / "run_stages.sh").read_text().splitlines()
    assert [l.split(" 2>&1")[0] for l in script if l.startswith("caffe train")] == cmds


def test_caffe_stages_rejects_uneven_gpu_split(tiny_dbs, tmp_path):
    train, _ = tiny_dbs
    r = run_cli("caffe-stages", "--paths", "2", "--train-db", train, "--out", str(tmp_path / "r"),
                "--crop", "32", "--batch", "16", "--gpus", "0,1,2", "--dry-run")
    assert r.returncode == 2
    assert "error:" in r.stderr and "3 GPUs" in r.stderr


def test_caffe_stages_run_the_levers_with_stock_layers_in_caffe_train(tiny_dbs, tmp_path):
    """--loss charbonnier, --lr-policy poly and --clip-gradients reach `caffe train` itself: the
    stage's net has no Python loss layer, and Caffe's log shows the poly lr and the clipping."""
    train, _ = tiny_dbs
    out = tmp_path / "run"
    groups = tmp_path / "equal.json"
    groups.write_text('[{"start_fraction": 0.0, "weights": [1, 1]}]')
    r = run_cli("caffe-stages", "--paths", "2", "--train-db", train, "--out", str(out),
                "--crop", "32", "--batch", "2", "--iters", "4", "--base-lr", "0.001",
                "--loss", "charbonnier", "--lr-policy", "poly", "--clip-gradients", "1e-9",
                "--loss-groups", str(groups), "--display", "1")
    assert r.returncode == 0, r.stderr[-3000:]
    sp = parse_solver(out / "stage1_solver.prototxt")
    assert (sp.lr_policy, sp.power, sp.max_iter) == ("poly", 1.0, 4)
    assert sp.clip_gradients == pytest.approx(1e-9)     # a float field
    net = (out / "stage1_train.prototxt").read_text()
    assert 'type: "Reduction"' in net and "Python" not in net and "EuclideanLoss" not in net
    log = (out / "stage1.log").read_text()
    assert "Gradient clipping: scaling down gradients" in log
    assert "Iteration 2, lr = 0.0005" in log, log[-3000:]
    assert (out / "snapshots" / "stage1_iter_4.caffemodel").exists()
    r = run_cli("caffe-stages", "--paths", "2", "--train-db", train, "--out", str(tmp_path / "x"),
                "--crop", "32", "--batch", "2", "--iters", "8", "--lr-policy", "poly", "--dry-run")
    assert r.returncode == 2 and "one group" in r.stderr
