"""`mrfnet export --onnx`: exported models agree with pycaffe (every variant, two path counts,
non-square sizes, the shipped weights), onnx.checker accepts them, one file serves any size, and
nets, caffemodels and .onnx files that cannot work are refused with a message, not a traceback."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

import caffe

from inference.backends import load
from inference.errors import (InferenceError, UnsupportedLayerError,
                              WeightsMismatchError)
from inference.onnx_export import NetGraph, build_model, cached_export, export
from test_inference_fixtures import make_model

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def own_cache(tmp_path_factory, monkeypatch):
    """ONNX exports of random-weight test nets go to a temporary cache, not the user's."""
    monkeypatch.setenv("MRFNET_CACHE", str(tmp_path_factory.getbasetemp() / "mrfnet-cache"))
# |onnxruntime - pycaffe| on the float outputs (random-weight outputs within about [-3, 3]).
TOL = 1e-5


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


def _agree(deploy, caffe_weights, onnx_path, shapes):
    """Largest |difference| over inputs of the given (H, W), and the largest |output|."""
    ort = load(deploy, onnx_path, "onnxruntime")
    ref = load(deploy, caffe_weights, "caffe")
    diff = size = 0.0
    for k, (h, w) in enumerate(shapes):
        x = np.random.default_rng(k).random((1, 3, h, w), dtype=np.float32)
        a, b = ort.forward(x), ref.forward(x)
        assert a.shape == b.shape == x.shape
        diff, size = max(diff, float(np.abs(a - b).max())), max(size, float(np.abs(b).max()))
    return diff, size


@pytest.mark.parametrize("paths", [2, 4])
@pytest.mark.parametrize("variant", ["mrfnet", "refinenet", "lwrefinenet", "rcrefinenet"])
def test_every_variant_agrees_with_pycaffe_at_any_size(models, tmp_path, variant, paths):
    deploy, weights = make_model(models, variant, paths)
    out = export(deploy, weights, tmp_path / f"{variant}.onnx")
    onnx.checker.check_model(str(out), full_check=True)
    model = onnx.load(str(out))
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    assert [o.name for o in model.graph.output] == ["predict_deblur", "predict_deblur_255"]
    s = 2 ** (paths - 1)
    # one file, two non-square sizes (tall and wide), neither of them the prototxt's 256x256
    diff, size = _agree(deploy, weights, out, [(5 * s, 7 * s), (12 * s, 4 * s)])
    assert size > 0.05
    assert diff <= TOL, diff


def test_the_shipped_weights_agree_with_pycaffe(tmp_path):
    deploy = REPO / "models" / "mrfnet" / "deploy.prototxt"
    weights = REPO / "models" / "mrfnet" / "mrfnet.caffemodel"
    out = export(deploy, weights, tmp_path / "shipped.onnx")
    onnx.checker.check_model(str(out), full_check=True)
    diff, size = _agree(deploy, weights, out, [(64, 96)])
    assert size > 0.1
    assert diff <= TOL, diff
    # and on a real photo through the whole deblur path (padding to the stride: 61 x 83)
    from data_prep.imageio import read_image
    from inference.tiling import deblur_float
    img = read_image(sorted((REPO.parent / "shared" / "data" / "gopro_mini").rglob("*.png"))[0])
    crop = img[:61, :83].astype(np.float32) / 255
    a, _ = deblur_float(load(deploy, out, "onnxruntime"), crop, mem_limit_mb=4096)
    b, _ = deblur_float(load(deploy, weights, "caffe"), crop, mem_limit_mb=4096)
    assert np.abs(a - b).max() <= TOL


# Every layer setting the exporter maps beyond what the generator writes: old-style input
# fields, strided padded max pooling (Caffe rounds the size up), average pooling with partial
# windows at the edge, dilation, groups, no bias, rectangular kernels, Eltwise coefficients /
# PROD / MAX, Power, leaky ReLU, Sigmoid, TanH, Dropout, a Split feeding two layers, a
# TRAIN-only layer, and two outputs.
LAYER_ZOO = """name: "zoo"
input: "data"
input_shape { dim: 1 dim: 3 dim: 16 dim: 16 }
layer { name: "c1" type: "Convolution" bottom: "data" top: "c1"
  convolution_param { num_output: 6 kernel_h: 3 kernel_w: 5 pad_h: 1 pad_w: 2
    weight_filler { type: "gaussian" std: 0.3 } bias_filler { type: "gaussian" std: 0.1 } } }
layer { name: "leaky" type: "ReLU" bottom: "c1" top: "c1" relu_param { negative_slope: 0.1 } }
layer { name: "split" type: "Split" bottom: "c1" top: "s1" top: "s2" }
layer { name: "pmax" type: "Pooling" bottom: "s1" top: "pmax"
  pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "pave" type: "Pooling" bottom: "s2" top: "pave"
  pooling_param { pool: AVE kernel_size: 3 stride: 2 } }
layer { name: "dil" type: "Convolution" bottom: "pmax" top: "dil"
  convolution_param { num_output: 6 kernel_size: 3 pad: 2 dilation: 2 group: 3 bias_term: false
    weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "drop" type: "Dropout" bottom: "dil" top: "dil" dropout_param { dropout_ratio: 0.5 } }
layer { name: "sig" type: "Sigmoid" bottom: "dil" top: "sig" }
layer { name: "tanh" type: "TanH" bottom: "pmax" top: "tanh" }
layer { name: "wsum" type: "Eltwise" bottom: "sig" bottom: "tanh" bottom: "pmax" top: "wsum"
  eltwise_param { operation: SUM coeff: 0.5 coeff: -2 coeff: 1 } }
layer { name: "prod" type: "Eltwise" bottom: "wsum" bottom: "tanh" bottom: "sig" top: "prod"
  eltwise_param { operation: PROD } }
layer { name: "emax" type: "Eltwise" bottom: "prod" bottom: "wsum" top: "emax"
  eltwise_param { operation: MAX } }
layer { name: "pow" type: "Power" bottom: "emax" top: "pow"
  power_param { power: 2 scale: 0.5 shift: 1 } }
layer { name: "cat" type: "Concat" bottom: "pow" bottom: "tanh" top: "cat" }
layer { name: "up" type: "Deconvolution" bottom: "cat" top: "up"
  convolution_param { num_output: 3 kernel_size: 4 stride: 2 pad: 1
    weight_filler { type: "gaussian" std: 0.3 } bias_filler { type: "gaussian" std: 0.1 } } }
layer { name: "train_only" type: "Sigmoid" bottom: "up" top: "up" include { phase: TRAIN } }
"""


def test_every_supported_layer_setting_agrees_with_pycaffe(tmp_path):
    from inference.backends import ort_session
    deploy = tmp_path / "zoo.prototxt"
    deploy.write_text(LAYER_ZOO)
    net = caffe.Net(str(deploy), caffe.TEST)
    weights = tmp_path / "zoo.caffemodel"
    net.save(str(weights))
    out = export(deploy, weights, tmp_path / "zoo.onnx")
    model = onnx.load(str(out))
    assert {"MaxPool", "AveragePool", "LeakyRelu", "Sum", "Mul", "Max", "Pow", "ConvTranspose",
            "Concat", "Sigmoid", "Tanh"} <= {n.op_type for n in model.graph.node}
    assert [o.name for o in model.graph.output] == ["pave", "up"]
    session = ort_session(str(out))
    # even and odd sizes: Caffe's rounded-up pooling windows hang over the edge
    for h, w in [(14, 22), (17, 11)]:
        x = np.random.default_rng(h).random((1, 3, h, w), dtype=np.float32)
        net.blobs["data"].reshape(1, 3, h, w)
        net.reshape()
        net.blobs["data"].data[...] = x
        ref = {k: v.copy() for k, v in net.forward().items()}
        got = dict(zip(["pave", "up"], session.run(["pave", "up"], {"data": x})))
        for name in ("pave", "up"):
            assert got[name].shape == ref[name].shape, (name, h, w)
            scale = max(1.0, float(np.abs(ref[name]).max()))
            assert np.abs(got[name] - ref[name]).max() <= TOL * scale, (name, h, w)


def test_layers_onnx_cannot_express_are_refused_by_name(tmp_path, models):
    deploy, weights = make_model(models)
    text = deploy.read_text()
    python = tmp_path / "python.prototxt"
    python.write_text(text + 'layer { name: "sneaky" type: "Python" bottom: "predict_deblur" '
                      'top: "x" python_param { module: "os" layer: "system" } }\n')
    with pytest.raises(UnsupportedLayerError, match="sneaky.*Python layers.*ONNX"):
        NetGraph(python)
    # the onnxruntime backend refuses it too, even where Python layers are allowed
    with pytest.raises(UnsupportedLayerError, match="sneaky"):
        load(python, weights, "onnxruntime", allow_python_layers=True)
    lrn = tmp_path / "lrn.prototxt"
    lrn.write_text(text + 'layer { name: "norm" type: "LRN" bottom: "predict_deblur" '
                   'top: "n" }\n')
    with pytest.raises(UnsupportedLayerError, match=r"norm \(LRN\) cannot be exported"):
        build_model(lrn, weights)
    padded_ave = tmp_path / "ave.prototxt"
    padded_ave.write_text(text + 'layer { name: "avg" type: "Pooling" bottom: "predict_deblur" '
                          'top: "a" pooling_param { pool: AVE kernel_size: 3 pad: 1 } }\n')
    with pytest.raises(UnsupportedLayerError, match="avg.*pad 0"):
        NetGraph(padded_ave)


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "mrfnet.cli", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, **(env or {})))


def test_bad_caffemodels_get_a_message(tmp_path, models):
    deploy2, weights2 = make_model(models, paths=2)
    deploy3, _ = make_model(models, paths=3)
    with pytest.raises(WeightsMismatchError, match="do not fit.*conv_r"):
        build_model(deploy3, weights2)
    junk = tmp_path / "junk.caffemodel"
    junk.write_bytes(os.urandom(2000))
    with pytest.raises(InferenceError, match="junk.caffemodel: not a Caffe weights file"):
        build_model(deploy2, junk)
    out = tmp_path / "never.onnx"
    for weights, msg in ((weights2, "do not fit"), (junk, "not a Caffe weights file"),
                         (tmp_path / "missing.caffemodel", "weights not found")):
        proc = _cli("export", "--deploy", deploy3 if weights == weights2 else deploy2,
                    "--weights", weights, "--onnx", out)
        assert proc.returncode == 2, proc.stderr
        assert msg in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()


def test_bad_onnx_files_get_a_message(tmp_path, models):
    deploy2, weights2 = make_model(models, paths=2)
    deploy3, _ = make_model(models, paths=3)
    good = export(deploy2, weights2, tmp_path / "p2.onnx")
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(good.read_bytes()[:5000])
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(os.urandom(3000))
    for bad in (cut, junk):
        with pytest.raises(InferenceError, match=f"{bad.name}: not a valid ONNX model.*mrfnet export"):
            load(deploy2, bad, "onnxruntime")
    with pytest.raises(WeightsMismatchError, match="p2.onnx does not fit.*net wants"):
        load(deploy3, good, "onnxruntime")
    with pytest.raises(InferenceError, match="run it with --backend onnxruntime"):
        load(deploy2, good, "opencv")
    img = tmp_path / "x.png"
    from PIL import Image
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img)
    for deploy, weights, msg in ((deploy2, cut, "not a valid ONNX model"),
                                 (deploy3, good, "does not fit")):
        proc = _cli("deblur", img, "--out", tmp_path / "o", "--backend", "onnxruntime",
                    "--deploy", deploy, "--weights", weights)
        assert proc.returncode == 2, proc.stderr
        assert msg in proc.stderr and "Traceback" not in proc.stderr


def test_export_command_writes_compares_and_caches(tmp_path, models):
    deploy, weights = make_model(models, "lwrefinenet", 3)
    out = tmp_path / "sub" / "lw.onnx"
    proc = _cli("export", "--deploy", deploy, "--weights", weights, "--onnx", out)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out) and out.is_file()
    assert "onnxruntime vs pycaffe" in proc.stderr and "within" in proc.stderr
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["mrfnet.stride"] == "4" and meta["mrfnet.weights"] == weights.name
    # without --onnx: the cache that --backend onnxruntime reads, once per content
    env = {"MRFNET_CACHE": str(tmp_path / "cache")}
    proc = _cli("export", "--deploy", deploy, "--weights", weights, "--no-compare", env=env)
    assert proc.returncode == 0, proc.stderr
    cached = Path(proc.stdout.strip())
    assert cached.parent == tmp_path / "cache" / "onnx" and cached.is_file()
    again = _cli("export", "--deploy", deploy, "--weights", weights, "--no-compare", env=env)
    assert again.stdout == proc.stdout and "already exported" in again.stderr


def test_the_cache_follows_the_caffemodel(tmp_path, monkeypatch, models):
    monkeypatch.setenv("MRFNET_CACHE", str(tmp_path / "cache"))
    deploy, weights = make_model(models)
    mine = tmp_path / "w.caffemodel"
    mine.write_bytes(weights.read_bytes())
    first, fresh = cached_export(deploy, mine)
    assert fresh and first.name.startswith("w-")
    assert cached_export(deploy, mine) == (first, False)
    # retrained weights under the same name: a new export, not the stale one
    mine.write_bytes(make_model(models, seed=1)[1].read_bytes())
    second, fresh = cached_export(deploy, mine)
    assert fresh and second != first
    x = np.random.default_rng(0).random((1, 3, 8, 12), dtype=np.float32)
    assert np.abs(load(deploy, mine, "onnxruntime").forward(x)
                  - load(deploy, mine, "caffe").forward(x)).max() <= TOL
    # a damaged cache entry (disk full, a stray edit) is exported again, not an error
    second.write_bytes(second.read_bytes()[:1000])
    backend = load(deploy, mine, "onnxruntime")
    assert backend.exported and backend.forward(x).shape == x.shape
    assert second.stat().st_size > 100000


def test_a_fixed_size_export_runs_in_opencvs_onnx_importer(tmp_path, models):
    """OpenCV 4.10's readNetFromONNX cannot follow symbolic H and W through the Concat of two
    scales; with --fixed-size it reads the file, and agrees with pycaffe."""
    import cv2
    deploy, weights = make_model(models, "mrfnet", 3)
    out = tmp_path / "fixed.onnx"
    proc = _cli("export", "--deploy", deploy, "--weights", weights, "--onnx", out,
                "--fixed-size", "40x24")
    assert proc.returncode == 0, proc.stderr
    assert "1 x 3 x 24 x 40" in proc.stderr and "within" in proc.stderr
    net = cv2.dnn.readNetFromONNX(str(out))
    x = np.random.default_rng(0).random((1, 3, 24, 40), dtype=np.float32)
    net.setInput(x)
    diff = np.abs(net.forward("predict_deblur") - load(deploy, weights, "caffe").forward(x)).max()
    assert diff <= 1e-4  # OpenCV's own convolutions: the backends' tolerance
    with pytest.raises(WeightsMismatchError, match="fixed height and width.*--fixed-size"):
        load(deploy, out, "onnxruntime")
    bad = _cli("export", "--deploy", deploy, "--weights", weights, "--onnx", tmp_path / "b.onnx",
               "--fixed-size", "41x24", "--no-compare")
    assert bad.returncode == 2 and "multiples of the net's stride 4" in bad.stderr
