"""The Python layers under the real `caffe` command line tool: a tiny two-scale net trains with
`caffe train` (the loss falls, test PSNR/SSIM are printed and PSNR rises), and a bad param_str
stops `caffe` with our message."""
import os
import re
import subprocess

import h5py
import numpy as np
from scipy import ndimage

import caffe  # noqa:F401  (the suite needs real Caffe)

from layers.scale_loss import loss_param_str

NET = """
name: "tiny_two_scale"
layer {{ name: "data" type: "HDF5Data" top: "data" top: "label"
  hdf5_data_param {{ source: "{list_file}" batch_size: 4 shuffle: true }} }}
layer {{ name: "conv" type: "Convolution" bottom: "data" top: "pred_r2"
  convolution_param {{ num_output: 3 kernel_size: 3 pad: 1
    weight_filler {{ type: "gaussian" std: 0.05 }} bias_filler {{ type: "constant" }} }} }}
layer {{ name: "down_pred" type: "Pooling" bottom: "pred_r2" top: "pred_r1"
  pooling_param {{ pool: AVE kernel_size: 2 stride: 2 }} }}
layer {{ name: "down_label" type: "Pooling" bottom: "label" top: "label_r1"
  pooling_param {{ pool: AVE kernel_size: 2 stride: 2 }} }}
layer {{ name: "loss" type: "Python" bottom: "pred_r1" bottom: "pred_r2" bottom: "label_r1"
  bottom: "label" top: "loss" loss_weight: 1
  python_param {{ module: "layers.caffe_layers" layer: "ScaleRefinementLoss"
    param_str: '{param_str}' }} }}
layer {{ name: "metrics" type: "Python" bottom: "pred_r2" bottom: "label" top: "psnr" top: "ssim"
  propagate_down: false propagate_down: false include {{ phase: TEST }}
  python_param {{ module: "layers.caffe_layers" layer: "ImageQualityMetrics" }} }}
"""

SOLVER = """net: "net.prototxt"
type: "Adam"
base_lr: 0.02
momentum: 0.9
momentum2: 0.999
lr_policy: "fixed"
max_iter: 80
display: 10
test_iter: 2
test_interval: 40
test_initialization: true
snapshot_after_train: false
random_seed: 3
solver_mode: CPU
"""


def _write_data(tmp_path):
    """Sharp images and a 3x3 box-blurred copy: the net learns to undo a known blur."""
    rng = np.random.default_rng(0)
    sharp = ndimage.uniform_filter(rng.random((16, 3, 16, 16)), size=(1, 1, 2, 2))
    blur = ndimage.uniform_filter(sharp, size=(1, 1, 3, 3), mode="nearest")
    with h5py.File(tmp_path / "train.h5", "w") as f:
        f["data"] = blur.astype(np.float32)
        f["label"] = sharp.astype(np.float32)
    (tmp_path / "train.txt").write_text(str(tmp_path / "train.h5") + "\n")


def _caffe(venv_bin, tmp_path):
    env = dict(os.environ, GLOG_minloglevel="0", GLOG_logtostderr="1")
    return subprocess.run([str(venv_bin / "caffe"), "train", "-solver", "solver.prototxt"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_caffe_cli_trains_with_python_loss_and_metrics(tmp_path, venv_bin):
    _write_data(tmp_path)
    (tmp_path / "net.prototxt").write_text(
        NET.format(list_file=tmp_path / "train.txt", param_str=loss_param_str([0.5, 1.5])))
    (tmp_path / "solver.prototxt").write_text(SOLVER)
    res = _caffe(venv_bin, tmp_path)
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-3000:]
    assert "Optimization Done" in log
    losses = [float(x) for x in re.findall(r"Iteration \d+ \(.*?\), loss = ([-\d.e+]+)", log)]
    if not losses:
        losses = [float(x) for x in re.findall(r"Iteration \d+, loss = ([-\d.e+]+)", log)]
    assert len(losses) >= 8, log[-3000:]
    assert losses[-1] < 0.5 * losses[0], losses
    psnr = [float(x) for x in re.findall(r"Test net output #\d+: psnr = ([-\d.e+]+)", log)]
    ssim = [float(x) for x in re.findall(r"Test net output #\d+: ssim = ([-\d.e+]+)", log)]
    assert len(psnr) == len(ssim) >= 2, log[-3000:]
    assert all(0 < s <= 1 for s in ssim)
    assert psnr[-1] > psnr[0] + 1.0, psnr


def test_caffe_cli_reports_bad_param_str(tmp_path, venv_bin):
    _write_data(tmp_path)
    (tmp_path / "net.prototxt").write_text(
        NET.format(list_file=tmp_path / "train.txt", param_str='{"weights": [1, 2, 3]}'))
    (tmp_path / "solver.prototxt").write_text(SOLVER)
    res = _caffe(venv_bin, tmp_path)
    assert res.returncode != 0
    assert re.search(r"LayerParamError: .*ScaleRefinementLoss.*got 3 weights", res.stderr), \
        res.stderr[-3000:]
