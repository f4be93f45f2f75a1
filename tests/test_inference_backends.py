"""pycaffe and OpenCV dnn backends: agreement, the BGR/[0,1] convention, and refusing bad
models (Python layers, weights that do not fit, corrupt or missing files) without Caffe
aborting the process."""
import os

import numpy as np
import pytest
from PIL import Image

import caffe

from inference.backends import load
from inference.errors import (InferenceError, ModelNotFoundError, UnsafeNetError,
                              WeightsMismatchError)
from inference.models import resolve_model
from inference.netfile import DeployNet
from inference.tiling import deblur
from test_inference_fixtures import make_model

# Largest |caffe - opencv| allowed on a net output (values within about [-3, 3]): float32
# summation-order noise. Measured: up to 5e-6 over the four variants at P=2 and 3.
BACKEND_TOL = 1e-4


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


@pytest.mark.parametrize("variant", ["mrfnet", "refinenet", "lwrefinenet", "rcrefinenet"])
def test_pycaffe_and_opencv_agree(models, variant):
    deploy, weights = make_model(models, variant)
    x = np.random.default_rng(1).random((1, 3, 38, 54), dtype=np.float32)
    a = load(deploy, weights, "caffe").forward(x)
    b = load(deploy, weights, "opencv").forward(x)
    assert a.shape == b.shape == x.shape
    assert np.abs(a).max() > 0.05  # a real, non-trivial output
    assert np.abs(a - b).max() <= BACKEND_TOL


CHANNEL_PROBE = """name: "channel_probe"
layer { name: "data" type: "Input" top: "data"
  input_param { shape { dim: 1 dim: 3 dim: 4 dim: 4 } } }
layer { name: "mix" type: "Convolution" bottom: "data" top: "predict_deblur"
  convolution_param { num_output: 3 kernel_size: 1 } }
"""


@pytest.mark.parametrize("backend", ["caffe", "opencv"])
def test_nets_see_bgr_in_0_1(tmp_path, backend):
    """Net channel 0 must be blue and values must be /255: a 1x1 conv keeps channel 0 (B),
    halves channel 1 (G) and replaces channel 2 (R) by the constant 0.25 -> 64 in uint8."""
    deploy = tmp_path / "probe.prototxt"
    deploy.write_text(CHANNEL_PROBE)
    net = caffe.Net(str(deploy), caffe.TEST)
    net.params["mix"][0].data[...] = np.diag([1.0, 0.5, 0.0]).reshape(3, 3, 1, 1)
    net.params["mix"][1].data[...] = [0.0, 0.0, 0.25]
    weights = tmp_path / "probe.caffemodel"
    net.save(str(weights))
    rgb = np.zeros((5, 7, 3), np.uint8)
    rgb[...] = (200, 100, 40)
    Image.fromarray(rgb).save(tmp_path / "in.png")  # PIL writes RGB: no OpenCV on this side

    from data_prep.imageio import read_image
    out, _ = deblur(load(deploy, weights, backend), read_image(tmp_path / "in.png"))
    Image.fromarray(out[..., ::-1]).save(tmp_path / "out.png")
    got = np.asarray(Image.open(tmp_path / "out.png").convert("RGB"))
    assert got.shape == rgb.shape
    assert (got == (64, 50, 40)).all(), got[0, 0]


def test_python_layers_are_refused_unless_allowed(tmp_path, models):
    deploy, weights = make_model(models)
    text = deploy.read_text() + """layer { name: "sneaky" type: "Python" bottom: "predict_deblur"
  top: "extra" python_param { module: "os" layer: "system" } }
"""
    bad = tmp_path / "python.prototxt"
    bad.write_text(text)
    for backend in ("caffe", "opencv"):
        with pytest.raises(UnsafeNetError, match="sneaky.*--allow-python-layers"):
            load(bad, weights, backend)
    DeployNet(bad).check_safe(allow_python_layers=True)  # the explicit flag lets it through
    commented = tmp_path / "comment.prototxt"
    commented.write_text(deploy.read_text() + '# layer { type: "Python" }\n')
    assert DeployNet(commented).python_layers == []


@pytest.mark.parametrize("backend", ["caffe", "opencv"])
def test_weights_of_another_net_are_refused_with_a_message(models, backend):
    deploy3, _ = make_model(models, paths=3)
    _, weights2 = make_model(models, paths=2)
    with pytest.raises(WeightsMismatchError, match="do not fit") as err:
        load(deploy3, weights2, backend)
    if backend == "caffe":
        assert "conv_r1_1" in str(err.value) or "not in the weights file" in str(err.value)
    # the process is still alive and a fitting model still loads
    assert load(*make_model(models, paths=3), backend).stride == 4


@pytest.mark.parametrize("backend", ["caffe", "opencv"])
def test_corrupt_and_missing_weights(tmp_path, models, backend):
    deploy, _ = make_model(models)
    junk = tmp_path / "junk.caffemodel"
    junk.write_bytes(os.urandom(3000))
    with pytest.raises(InferenceError, match="junk.caffemodel"):
        load(deploy, junk, backend)
    with pytest.raises(ModelNotFoundError, match="nothere.caffemodel"):
        load(deploy, tmp_path / "nothere.caffemodel", backend)


def test_missing_shipped_model_says_how_to_get_one(tmp_path, models):
    deploy, _ = make_model(models)
    (tmp_path / "mrfnet").mkdir()
    (tmp_path / "mrfnet" / "deploy.prototxt").write_text(deploy.read_text())
    with pytest.raises(ModelNotFoundError, match="mrfnet train --variant mrfnet.*--weights"):
        resolve_model("mrfnet", models_dir=tmp_path)
    with pytest.raises(ModelNotFoundError, match="mrfnet prototxt"):
        resolve_model("refinenet", models_dir=tmp_path)


def test_gpu_request_on_a_cpu_build_and_bad_input_shapes(models):
    deploy, weights = make_model(models)
    with pytest.raises(InferenceError, match="no CUDA"):
        load(deploy, weights, "caffe", gpu=True)
    backend = load(deploy, weights, "caffe")
    with pytest.raises(InferenceError, match="multiple of the net's stride 2"):
        backend.forward(np.zeros((1, 3, 9, 8), np.float32))
    with pytest.raises(InferenceError, match="float32"):
        backend.forward(np.zeros((1, 3, 8, 8), np.float64))
