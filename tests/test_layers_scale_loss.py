"""ScaleRefinementLoss through real caffe.Net objects: value against eq. (5) written out here,
finite-difference gradients (after BVLC's test_gradient_for_python_layer.py), equality with the
stock EuclideanLoss-per-scale flavour, and weight changes while a net lives."""
import numpy as np
import pytest

import caffe

from layers import scale_loss
from layers.caffe_layers import loss_layers, set_loss_weights
from layers.scale_loss import loss_param_str
from layers.errors import LayerParamError, LossWeightError
from gradcheck import central_difference

# (K, N, C, finest H, finest W, weights, loss_weight); scale k has H/2^(K-k) x W/2^(K-k)
CASES = [
    (1, 1, 3, 4, 6, [1.0], 1.0),
    (2, 2, 3, 8, 8, [0.5, 2.0], 1.0),
    (2, 3, 1, 4, 12, [1.0, 1.0], 2.5),
    (4, 2, 3, 16, 8, [0.0, 1.0, 3.0, 0.25], 1.0),
    (4, 1, 2, 8, 16, [2.133333, 1.066667, 0.533333, 0.266667], 0.7),
]


def _shapes(k, n, c, h, w):
    return [(n, c, h >> (k - 1 - i), w >> (k - 1 - i)) for i in range(k)]


def _inputs(shapes):
    lines = []
    for prefix in ("pred", "label"):
        for i, s in enumerate(shapes, start=1):
            dims = " ".join(f"dim: {d}" for d in s)
            lines.append(f'layer {{ name: "{prefix}_r{i}" type: "Input" top: "{prefix}_r{i}" '
                         f'input_param {{ shape {{ {dims} }} }} }}')
    return lines


def python_loss_net(tmp_path, shapes, weights, loss_weight=1.0, param_str=None):
    k = len(shapes)
    bottoms = " ".join(f'bottom: "pred_r{i}"' for i in range(1, k + 1))
    bottoms += " " + " ".join(f'bottom: "label_r{i}"' for i in range(1, k + 1))
    ps = loss_param_str(weights, name="loss") if param_str is None else param_str
    text = "\n".join(["force_backward: true"] + _inputs(shapes) + [
        f'layer {{ name: "loss" type: "Python" {bottoms} top: "loss" loss_weight: {loss_weight} '
        f'python_param {{ module: "layers.caffe_layers" layer: "ScaleRefinementLoss" '
        f"param_str: '{ps}' }} }}"])
    path = tmp_path / "py_loss.prototxt"
    path.write_text(text)
    return caffe.Net(str(path), caffe.TRAIN)


def stock_loss_net(tmp_path, shapes, weights):
    k = len(shapes)
    lines = ["force_backward: true"] + _inputs(shapes)
    for i, (s, w) in enumerate(zip(shapes, weights), start=1):
        lw = w / (k * s[1] * s[2] * s[3])  # the contract's loss_weight for EuclideanLoss
        lines.append(f'layer {{ name: "loss_r{i}" type: "EuclideanLoss" bottom: "pred_r{i}" '
                     f'bottom: "label_r{i}" top: "loss_r{i}" loss_weight: {lw!r} }}')
    path = tmp_path / "stock_loss.prototxt"
    path.write_text("\n".join(lines))
    return caffe.Net(str(path), caffe.TRAIN)


def _fill(net, shapes, seed):
    rng = np.random.default_rng(seed)
    data = {}
    for i, s in enumerate(shapes, start=1):
        data[f"pred_r{i}"] = rng.random(s).astype(np.float32)
        data[f"label_r{i}"] = rng.random(s).astype(np.float32)
    for name, v in data.items():
        net.blobs[name].data[...] = v
    return data


def eq5(data, k, weights):
    """Eq. (5) written out: 1/(2K) sum_k w_k/(c h w) * mean over the batch of ||L_k - S_k||^2."""
    total = 0.0
    for i in range(1, k + 1):
        p = data[f"pred_r{i}"].astype(np.float64)
        t = data[f"label_r{i}"].astype(np.float64)
        n, c, h, w = p.shape
        per_image = [np.sum((p[j] - t[j]) ** 2) for j in range(n)]
        total += weights[i - 1] / (c * h * w) * np.mean(per_image)
    return total / (2 * k)


@pytest.mark.parametrize("case", CASES, ids=[f"K{c[0]}-N{c[1]}-w{c[5]}" for c in CASES])
def test_value_and_finite_difference_gradients(tmp_path, case):
    k, n, c, h, w, weights, lw = case
    shapes = _shapes(k, n, c, h, w)
    net = python_loss_net(tmp_path, shapes, weights, loss_weight=lw)
    data = _fill(net, shapes, seed=k * 10 + n)
    out = net.forward()
    assert float(out["loss"][0]) == pytest.approx(eq5(data, k, weights), rel=1e-6)
    net.backward()
    analytic = {name: net.blobs[name].diff.copy() for name in data}

    def objective():
        return lw * float(net.forward()["loss"][0])

    rng = np.random.default_rng(0)
    step = 0.1  # the loss is quadratic: central differences are exact up to float32 rounding
    for name in data:
        blob = net.blobs[name].data
        grad = analytic[name]
        scale = max(np.abs(grad).max(), 1e-12)
        for idx in rng.choice(blob.size, size=min(12, blob.size), replace=False):
            numeric = central_difference(blob.flat, idx, objective, step)
            assert abs(numeric - grad.flat[idx]) <= 2e-3 * scale + 1e-9, \
                f"d loss / d {name}[{idx}]: computed {grad.flat[idx]}, numeric {numeric}"
        is_target = name.startswith("label")
        i = int(name.split("_r")[1])
        if weights[i - 1] == 0:
            assert not np.any(grad)
        else:
            # targets get exactly the negated prediction gradient
            other = analytic[name.replace("label", "pred") if is_target else name.replace("pred", "label")]
            np.testing.assert_allclose(grad, -other, rtol=1e-6)


@pytest.mark.parametrize("case", CASES[1:4], ids=["K2", "K2b", "K4"])
def test_equals_stock_euclidean_composition(tmp_path, case):
    k, n, c, h, w, weights, _ = case
    shapes = _shapes(k, n, c, h, w)
    py = python_loss_net(tmp_path, shapes, weights)
    stock = stock_loss_net(tmp_path, shapes, weights)
    data = _fill(py, shapes, seed=5)
    for name, v in data.items():
        stock.blobs[name].data[...] = v
    py_loss = float(py.forward()["loss"][0])
    stock_out = stock.forward()
    stock_loss = sum(float(stock_out[f"loss_r{i}"]) * weights[i - 1] / (k * s[1] * s[2] * s[3])
                     for i, s in enumerate(shapes, start=1))
    assert py_loss == pytest.approx(stock_loss, rel=1e-5)
    py.backward()
    stock.backward()
    for name in data:
        np.testing.assert_allclose(py.blobs[name].diff, stock.blobs[name].diff,
                                   rtol=1e-4, atol=1e-9 * np.abs(stock.blobs[name].diff).max())


def test_euclidean_loss_weights_helper():
    shapes = _shapes(3, 2, 3, 16, 8)
    got = scale_loss.euclidean_loss_weights(shapes, [1, 2, 4])
    assert got == pytest.approx([1 / (3 * 3 * 4 * 2), 2 / (3 * 3 * 8 * 4), 4 / (3 * 3 * 16 * 8)])


def test_targets_untouched_when_not_needed(tmp_path):
    """Without force_backward, Caffe asks for no gradient at Input labels: the layer must not
    write there, while the prediction (made by a conv with parameters) gets one."""
    text = "\n".join([
        'layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 dim: 4 dim: 4 } } }',
        'layer { name: "label" type: "Input" top: "label" input_param { shape { dim: 2 dim: 3 dim: 4 dim: 4 } } }',
        'layer { name: "conv" type: "Convolution" bottom: "x" top: "pred" convolution_param { '
        'num_output: 3 kernel_size: 1 weight_filler { type: "gaussian" std: 0.5 } } }',
        'layer { name: "loss" type: "Python" bottom: "pred" bottom: "label" top: "loss" loss_weight: 1 '
        'python_param { module: "layers.caffe_layers" layer: "ScaleRefinementLoss" '
        "param_str: '{\"weights\": [1]}' } }"])
    path = tmp_path / "net.prototxt"
    path.write_text(text)
    net = caffe.Net(str(path), caffe.TRAIN)
    rng = np.random.default_rng(1)
    net.blobs["x"].data[...] = rng.random((2, 3, 4, 4))
    net.blobs["label"].data[...] = rng.random((2, 3, 4, 4))
    net.blobs["label"].diff[...] = 7.0
    net.forward()
    net.backward()
    assert np.all(net.blobs["label"].diff == 7.0)
    assert np.any(net.blobs["pred"].diff != 0)
    assert np.any(net.params["conv"][0].diff != 0)


def test_set_loss_weights_while_net_lives(tmp_path):
    shapes = _shapes(2, 2, 3, 8, 8)
    net = python_loss_net(tmp_path, shapes, [1.0, 1.0])
    data = _fill(net, shapes, seed=2)
    assert [name for name, _ in loss_layers(net)] == ["loss"]
    before = float(net.forward()["loss"][0])
    assert before == pytest.approx(eq5(data, 2, [1, 1]), rel=1e-6)
    assert set_loss_weights(net, [0.25, 3.0]) == ["loss"]
    np.testing.assert_array_equal(net.layers[list(net._layer_names).index("loss")].weights,
                                  [0.25, 3.0])
    assert float(net.forward()["loss"][0]) == pytest.approx(eq5(data, 2, [0.25, 3.0]), rel=1e-6)
    for bad, match in (([1.0, 2.0, 3.0], "3 weights"), ([1.0, -2.0], ">= 0"), ([0, 0], "> 0")):
        with pytest.raises(LayerParamError, match=match):
            set_loss_weights(net, bad)
    np.testing.assert_array_equal(loss_layers(net)[0][1].weights, [0.25, 3.0])  # unchanged
    with pytest.raises(LayerParamError, match="'loss'"):
        loss_layers(net)[0][1].weights = [float("nan"), 1.0]
    with pytest.raises(ValueError, match="read-only"):
        loss_layers(net)[0][1].weights[0] = -1.0


def test_set_loss_weights_needs_a_loss_layer(tmp_path):
    net = stock_loss_net(tmp_path, _shapes(1, 1, 3, 4, 4), [1.0])
    with pytest.raises(LayerParamError, match="no ScaleRefinementLoss"):
        set_loss_weights(net, [1.0])


def test_numpy_loss_checks_shapes():
    with pytest.raises(LossWeightError, match="differs"):
        scale_loss.scale_loss([np.zeros((1, 3, 4, 4))], [np.zeros((1, 3, 2, 2))], [1])
    with pytest.raises(LossWeightError, match="K >= 1"):
        scale_loss.scale_loss([], [], [])


def test_weights_change_inside_a_pycaffe_solver(tmp_path):
    """The trainer's route: set_loss_weights(solver.net, w) between steps takes effect."""
    net = tmp_path / "net.prototxt"
    net.write_text("\n".join([
        'layer { name: "x" type: "DummyData" top: "x" dummy_data_param { '
        'shape { dim: 2 dim: 3 dim: 8 dim: 8 } data_filler { type: "uniform" } } }',
        'layer { name: "label" type: "DummyData" top: "label" dummy_data_param { '
        'shape { dim: 2 dim: 3 dim: 8 dim: 8 } data_filler { type: "constant" value: 0.5 } } }',
        'layer { name: "conv" type: "Convolution" bottom: "x" top: "pred_r2" convolution_param { '
        'num_output: 3 kernel_size: 3 pad: 1 weight_filler { type: "gaussian" std: 0.1 } } }',
        'layer { name: "pool" type: "Pooling" bottom: "pred_r2" top: "pred_r1" '
        'pooling_param { pool: AVE kernel_size: 2 stride: 2 } }',
        'layer { name: "pool_l" type: "Pooling" bottom: "label" top: "label_r1" '
        'pooling_param { pool: AVE kernel_size: 2 stride: 2 } }',
        'layer { name: "loss" type: "Python" bottom: "pred_r1" bottom: "pred_r2" '
        'bottom: "label_r1" bottom: "label" top: "loss" loss_weight: 1 python_param { '
        'module: "layers.caffe_layers" layer: "ScaleRefinementLoss" '
        "param_str: '{\"weights\": [1, 1]}' } }"]))
    solver_file = tmp_path / "solver.prototxt"
    solver_file.write_text(f'net: "{net}"\ntype: "Adam"\nbase_lr: 0.01\nlr_policy: "fixed"\n'
                           'max_iter: 10\nsolver_mode: CPU\nsnapshot_after_train: false\n')
    solver = caffe.get_solver(str(solver_file))
    solver.step(1)
    set_loss_weights(solver.net, [3.0, 0.5])
    solver.step(1)
    b = solver.net.blobs
    data = {k: b[k].data.copy() for k in ("pred_r1", "pred_r2", "label_r1")}
    data["label_r2"] = b["label"].data.copy()
    assert float(b["loss"].data[0]) == pytest.approx(eq5(data, 2, [3.0, 0.5]), rel=1e-5)
    np.testing.assert_array_equal(loss_layers(solver.net)[0][1].weights, [3.0, 0.5])
