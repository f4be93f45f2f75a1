"""The Caffe toolchain is real: pycaffe imports, has the layers we need, nets run forward and
backward, and the `caffe` command trains a net whose loss is this project's Python layer."""
import os
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np

import caffe
from caffe import layers as L, params as P

REPO = Path(__file__).resolve().parents[1]


def test_pycaffe_has_the_layer_types_we_use():
    types = set(caffe.layer_type_list())
    for needed in ["Convolution", "Deconvolution", "Python", "Data", "HDF5Data", "Pooling",
                   "Eltwise", "Concat", "Slice", "EuclideanLoss", "Power", "Input"]:
        assert needed in types, needed


def test_netspec_net_runs_forward_and_backward(tmp_path):
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[2, 3, 8, 8]))
    n.label = L.Input(shape=dict(dim=[2, 4, 8, 8]))
    n.conv = L.Convolution(n.data, num_output=4, kernel_size=3, pad=1,
                           weight_filler=dict(type="xavier"))
    n.loss = L.EuclideanLoss(n.conv, n.label)
    path = tmp_path / "net.prototxt"
    path.write_text(str(n.to_proto()))
    net = caffe.Net(str(path), caffe.TRAIN)
    rng = np.random.default_rng(0)
    net.blobs["data"].data[...] = rng.standard_normal((2, 3, 8, 8))
    net.blobs["label"].data[...] = rng.standard_normal((2, 4, 8, 8))
    out = net.forward()
    diff = net.blobs["conv"].data - net.blobs["label"].data
    assert np.isclose(out["loss"], (diff ** 2).sum() / 2 / 2, rtol=1e-5)
    net.backward()
    grad = net.params["conv"][0].diff
    assert np.isfinite(grad).all() and np.abs(grad).sum() > 0


def _write_tiny_problem(tmp_path):
    """An HDF5 batch where the target is a fixed linear function of the input."""
    rng = np.random.default_rng(1)
    data = rng.uniform(0, 1, (8, 3, 8, 8)).astype(np.float32)
    label = (0.5 * data[:, ::-1] + 0.1).astype(np.float32)
    h5 = tmp_path / "batch.h5"
    with h5py.File(h5, "w") as f:
        f["data"], f["label"] = data, label
    (tmp_path / "list.txt").write_text(f"{h5}\n")
    net = f"""name: "tiny"
layer {{ name: "d" type: "HDF5Data" top: "data" top: "label"
  hdf5_data_param {{ source: "{tmp_path / 'list.txt'}" batch_size: 4 }} }}
layer {{ name: "conv" type: "Convolution" bottom: "data" top: "pred"
  convolution_param {{ num_output: 3 kernel_size: 1 weight_filler {{ type: "gaussian" std: 0.1 }} }} }}
layer {{ name: "loss" type: "Python" bottom: "pred" bottom: "label" top: "loss" loss_weight: 1
  python_param {{ module: "layers.caffe_layers" layer: "ScaleRefinementLoss" param_str: '{{"weights": [1.0]}}' }} }}
"""
    (tmp_path / "net.prototxt").write_text(net)
    solver = f"""net: "{tmp_path / 'net.prototxt'}"
type: "Adam"
base_lr: 0.05
momentum: 0.9
momentum2: 0.999
lr_policy: "step"
gamma: 0.5
stepsize: 10
max_iter: 20
display: 1
snapshot: 20
snapshot_prefix: "{tmp_path / 'snap'}"
solver_mode: CPU
"""
    (tmp_path / "solver.prototxt").write_text(solver)
    return tmp_path / "solver.prototxt"


def test_caffe_command_trains_with_a_python_loss_layer(tmp_path, venv_bin):
    solver = _write_tiny_problem(tmp_path)
    env = dict(os.environ, GLOG_minloglevel="0")  # the log is what this test reads
    proc = subprocess.run([str(venv_bin / "caffe"), "train", "-solver", str(solver)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert "Optimization Done" in log
    assert (tmp_path / "snap_iter_20.caffemodel").exists()
    assert (tmp_path / "snap_iter_20.solverstate").exists()
    losses = [float(x) for x in re.findall(r"Iteration \d+(?: \(.*?\))?, loss = ([0-9.eE+-]+)", log)]
    assert len(losses) >= 15 and losses[-1] < 0.5 * losses[0], losses
    lrs = {int(i): float(v) for i, v in re.findall(r"Iteration (\d+), lr = ([0-9.eE+-]+)", log)}
    assert lrs[0] == 0.05 and lrs[9] == 0.05
    assert lrs[10] == 0.025 and lrs[19] == 0.025


def test_second_caffe_build_compiles_nothing():
    proc = subprocess.run(["bash", str(REPO / "tools" / "caffe" / "build.sh"), sys.executable],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "nothing to compile" in proc.stderr
    assert "compiling" not in proc.stderr
    built = Path(proc.stdout.strip())
    assert (built / "BUILD_OK").exists()
    assert Path(caffe.__file__).resolve().is_relative_to(built.resolve())
