"""The training levers of `mrfnet train` beside the paper's recipe (docs/training.md): the L1 and
Charbonnier penalties (Python layer: value and finite-difference gradients; stock-layer twin:
equal value and gradients), the poly lr policy and clip_gradients (in the solver file, and in
effect in `caffe train`'s own log), and the dihedral augmentation of the fresh-blur sampler."""
import os
import re
import subprocess

import numpy as np
import pytest

import caffe
from caffe.proto import caffe_pb2
from google.protobuf import text_format

from data_prep import recipe
from data_prep.imageio import write_image
from gradcheck import central_difference
from layers import scale_loss
from layers.scale_loss import loss_param_str
from prototxt_gen import nets
from prototxt_gen.caffe_net import load
from solver import schedule as S, solver_file as SF
from solver.fresh_data import FreshBlurBatches, dihedral
from solver.errors import RunConfigError
from test_layers_scale_loss import _fill, _shapes, python_loss_net
from test_prototxt_train import random_batch, set_batch, total_loss

PENALTIES = ("l1", "charbonnier")


def by_hand(data, k, weights, penalty):
    """1/K sum_k w_k/(c h w) * mean over the batch of sum rho(pred - label), written out."""
    total = 0.0
    for i in range(1, k + 1):
        d = data[f"pred_r{i}"].astype(np.float64) - data[f"label_r{i}"]
        rho = np.abs(d) if penalty == "l1" else np.sqrt(d * d + 1e-6)
        n, c, h, w = d.shape
        total += weights[i - 1] / (c * h * w) * rho.sum() / n
    return total / k


@pytest.mark.parametrize("penalty", PENALTIES)
def test_penalty_layer_value_and_finite_difference_gradients(tmp_path, penalty):
    k, weights = 3, [0.5, 1.0, 2.0]
    shapes = _shapes(k, 2, 3, 8, 8)
    net = python_loss_net(tmp_path, shapes, weights,
                          param_str=loss_param_str(weights, name="loss", penalty=penalty))
    data = _fill(net, shapes, seed=11)
    assert float(net.forward()["loss"][0]) == pytest.approx(by_hand(data, k, weights, penalty),
                                                            rel=1e-6)
    net.backward()
    rng = np.random.default_rng(1)
    for name in data:
        grad = net.blobs[name].diff.copy()
        scale = np.abs(grad).max()
        assert scale > 0
        for idx in rng.choice(grad.size, size=10, replace=False):
            d = float(data[name].flat[idx] - data[name.replace("pred", "label") if "pred" in name
                                                  else name.replace("label", "pred")].flat[idx])
            if abs(d) < 0.03:
                continue    # a step of 0.01 must keep L1 on one side of its kink
            step = 1e-2     # float32 loss: smaller steps drown in rounding
            numeric = central_difference(net.blobs[name].data.flat, idx,
                                         lambda: float(net.forward()["loss"][0]), step)
            assert abs(numeric - grad.flat[idx]) <= 2e-2 * scale, (name, idx, numeric, grad.flat[idx])


def test_penalty_names_are_checked(tmp_path):
    shapes = _shapes(1, 1, 3, 4, 4)
    with pytest.raises(Exception, match="unknown penalty 'l3'"):
        python_loss_net(tmp_path, shapes, [1.0], param_str='{"weights": [1.0], "penalty": "l3"}')
    assert nets.CHARBONNIER_EPS == scale_loss.CHARBONNIER_EPS


@pytest.mark.parametrize("penalty", PENALTIES)
@pytest.mark.parametrize("paths,weights", [(3, [0.25, 1.0, 2.0]), (2, None)])
def test_stock_twin_equals_the_python_layer(penalty, paths, weights):
    """The stock composition (what `caffe train -gpu` runs) and the Python layer (what
    `mrfnet train` runs) give the same loss and the same parameter gradients."""
    crop, batch = 32, 2
    caffe.set_random_seed(7)
    stock = load(nets.train_net("mrfnet", paths, data="input", loss="stock", crop=crop,
                                batch_size=batch, weights=weights, penalty=penalty), phase="train")
    python = load(nets.train_net("mrfnet", paths, data="input", loss="python", crop=crop,
                                 batch_size=batch, weights=weights, penalty=penalty), phase="train")
    types = {layer.type for layer in stock.layers}
    assert "EuclideanLoss" not in types and "Reduction" in types
    for name, blobs in stock.params.items():
        for a, b in zip(blobs, python.params[name]):
            b.data[...] = a.data
    blur, sharp = random_batch(3, paths)
    for net in (stock, python):
        set_batch(net, blur, sharp)
        net.forward()
        net.backward()
    data = {}
    for k in range(1, paths + 1):
        data[f"pred_r{k}"] = stock.blobs[f"pred_r{k}"].data.copy()
        data[f"label_r{k}"] = stock.blobs[f"label_r{k}" if k < paths else "label"].data.copy()
    expected = by_hand(data, paths, nets.loss_weights(paths, weights), penalty)
    assert total_loss(stock) == pytest.approx(expected, rel=1e-5)
    assert total_loss(python) == pytest.approx(expected, rel=1e-5)
    for name, blobs in stock.params.items():
        for a, b in zip(blobs, python.params[name]):
            scale = np.abs(a.diff).max()
            assert scale > 0, name
            np.testing.assert_allclose(b.diff, a.diff, rtol=1e-3, atol=1e-4 * scale, err_msg=name)


def test_the_default_penalty_keeps_the_papers_nets():
    for loss in nets.LOSS_KINDS:
        assert nets.train_net("mrfnet", 4, loss=loss) == nets.train_net("mrfnet", 4, loss=loss,
                                                                        penalty="l2")


# ------------------------------------------------------------------ lr policy and clipping
TINY_NET = """name: "tiny"
layer { name: "x" type: "DummyData" top: "x" top: "y"
  dummy_data_param { shape { dim: 4 dim: 3 } shape { dim: 4 dim: 2 }
                     data_filler { type: "gaussian" std: 10 } data_filler { type: "constant" value: 5 } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "p"
  inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 1 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "p" bottom: "y" top: "loss" }
"""


def caffe_train_log(tmp_path, venv_bin, **solver_kw):
    (tmp_path / "tiny.prototxt").write_text(TINY_NET)
    sched = S.paper_schedule(40, iters=10, total_batch=4, base_lr=0.01,
                             lr_policy=solver_kw.pop("lr_policy", "step"), stepsize=4)
    params = SF.solver_params(sched, "tiny.prototxt", "snap", display=1, snapshot=0, **solver_kw)
    params["snapshot_after_train"] = False
    solver = SF.write_solver(tmp_path / "solver.prototxt", params)
    parsed = text_format.Parse((tmp_path / "solver.prototxt").read_text(), caffe_pb2.SolverParameter())
    env = dict(os.environ, GLOG_minloglevel="0", GLOG_logtostderr="1")
    proc = subprocess.run([str(venv_bin / "caffe"), "train", "-solver", "solver.prototxt"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert solver
    return sched, parsed, proc.stderr


def test_poly_lr_is_what_caffe_train_uses(tmp_path, venv_bin):
    sched, parsed, log = caffe_train_log(tmp_path, venv_bin, lr_policy="poly")
    assert parsed.lr_policy == "poly" and parsed.power == 1.0 and parsed.max_iter == 10
    assert not parsed.HasField("stepsize")
    used = {int(i): float(lr) for i, lr in re.findall(r"Iteration (\d+), lr = ([0-9.e+-]+)", log)}
    assert len(used) >= 8, log[-2000:]
    for it, lr in used.items():      # read from Caffe's own log, not from our formula's callers
        assert lr == pytest.approx(0.01 * (1 - it / 10), rel=1e-4, abs=1e-9), (it, lr)
        assert lr == pytest.approx(S.lr_at(it, 0.01, 0.5, 4, "poly", 10), rel=1e-4, abs=1e-9)


def test_clip_gradients_is_written_and_applied(tmp_path, venv_bin):
    _, parsed, log = caffe_train_log(tmp_path, venv_bin, clip_gradients=0.5)
    assert parsed.clip_gradients == 0.5
    assert "Gradient clipping: scaling down gradients" in log, log[-2000:]
    with pytest.raises(RunConfigError, match="clip_gradients"):
        SF.solver_params(S.paper_schedule(40, iters=10), "n", "p", clip_gradients=-1)


# ------------------------------------------------------------------ dihedral augmentation
def test_the_recipes_kernel_set_is_closed_under_the_square_symmetries():
    thetas = set(recipe.MOTION_THETAS)
    assert {(t + 90) % 360 for t in thetas} == thetas
    assert {(-t) % 360 for t in thetas} | {(180 - t) % 360 for t in thetas} == thetas


def test_dihedral_augment_transforms_pairs_alike_and_leaves_the_default_stream_alone():
    rng = np.random.default_rng(0)
    photos = [(rng.random((96, 96, 3)) * 255).astype(np.uint8) for _ in range(3)]
    plain = FreshBlurBatches(photos, 32, 4, seed=3)
    again = FreshBlurBatches(photos, 32, 4, seed=3)
    aug = FreshBlurBatches(photos, 32, 4, seed=3, augment="dihedral")
    d0, l0 = plain.make_batch()
    d1, l1 = again.make_batch()
    np.testing.assert_array_equal(d0, d1)     # same seed, no augment: same samples as before
    da, la = aug.make_batch()
    # the first sample draws photo, kernel, crop and mirror exactly as without augment; the
    # augmented one is one of the 8 symmetries of it, the same for blurred and sharp
    b0, s0 = d0[0].transpose(1, 2, 0), l0[0].transpose(1, 2, 0)
    hits = [(f, t) for f in (False, True) for t in range(4)
            if np.array_equal(dihedral(b0, f, t), da[0].transpose(1, 2, 0))
            and np.array_equal(dihedral(s0, f, t), la[0].transpose(1, 2, 0))]
    assert hits
    assert not np.array_equal(da, d0)
    with pytest.raises(RunConfigError, match="--augment"):
        FreshBlurBatches(photos, 32, 4, augment="rot45")


def test_train_writes_the_levers_into_its_solver_and_net(tmp_path, venv_bin):
    from data_prep import bundled
    img = tmp_path / "photos"
    for name in ("astronaut", "coffee"):
        write_image(img / f"c_{name}.png", bundled.load(name))
    out = tmp_path / "run"
    proc = subprocess.run(
        [str(venv_bin / "mrfnet"), "train", "--train-images", str(img), "--out", str(out),
         "--paths", "2", "--batch", "2", "--crop", "32", "--iters", "3", "--workers", "1",
         "--lr-policy", "poly", "--clip-gradients", "2.5", "--loss", "charbonnier",
         "--augment", "dihedral", "--no-progress", "--snapshot-every", "3"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    solver = text_format.Parse((out / "solver.prototxt").read_text(), caffe_pb2.SolverParameter())
    assert (solver.lr_policy, solver.power, solver.clip_gradients) == ("poly", 1.0, 2.5)
    assert '\\"penalty\\": \\"charbonnier\\"' in (out / "train.prototxt").read_text()
    from solver.runlog import read_log
    lrs = [r["lr"] for r in read_log(str(out / "train_log.jsonl")) if r.get("kind") == "train"]
    assert lrs == pytest.approx([1e-4 * (1 - i / 3) for i in range(3)])
    bad = subprocess.run([str(venv_bin / "mrfnet"), "train", "--train-db", str(img),
                          "--out", str(tmp_path / "x"), "--augment", "dihedral"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--augment applies to --train-images" in bad.stderr
