"""The x8 self-ensemble on real Caffe, OpenCV dnn and ONNX Runtime: it is the mean of the eight
transformed forwards, each turned back, whatever the image's shape (padding and tiling apply
to each transform)."""
import numpy as np
import pytest

from inference.backends import load
from inference.ensemble import TRANSFORMS, transform, untransform
from inference.tiling import MEM_SAFETY, deblur, deblur_float
from layers.metrics import to_uint8
from test_inference_fixtures import make_model


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("models"), paths=3)


@pytest.fixture(scope="module", params=["caffe", "opencv", "onnxruntime"])
def backend(request, model):
    return load(*model, request.param)


def test_transforms_are_the_eight_symmetries_of_the_square_and_undo_exactly():
    x = np.arange(2 * 3).reshape(2, 3, 1)
    assert len({transform(x, k, f).tobytes() + bytes(transform(x, k, f).shape)
                for k, f in TRANSFORMS}) == 8
    assert TRANSFORMS[0] == (0, False)  # tiling.deblur reuses the plain output for it
    for k, f in TRANSFORMS:
        assert np.array_equal(untransform(transform(x, k, f), k, f), x)


def test_ensemble_is_the_mean_of_the_eight_transformed_forwards(backend):
    img = np.random.default_rng(1).integers(0, 256, (24, 40, 3), dtype=np.uint8)  # stride 4
    x = img.astype(np.float32) / np.float32(255)
    outs = []
    for k, flip in TRANSFORMS:
        t = np.ascontiguousarray(transform(x, k, flip))
        y = backend.forward(t.transpose(2, 0, 1)[None])[0].transpose(1, 2, 0)
        outs.append(untransform(y, k, flip))
    expect = to_uint8(np.mean(np.stack(outs), axis=0))
    got, plan = deblur(backend, img, ensemble=True)
    assert got.shape == img.shape and not plan.tiled
    assert np.abs(got.astype(int) - expect).max() <= 1 and (got == expect).mean() > 0.99
    plain = deblur(backend, img)[0]
    assert np.abs(plain.astype(int) - got).mean() > 1  # the transforms do change the result
    assert np.array_equal(plain, to_uint8(outs[0]))


def test_ensemble_of_an_odd_sized_tiled_image_keeps_its_size(model):
    backend = load(*model, "caffe")
    img = np.random.default_rng(2).integers(0, 256, (45, 71, 3), dtype=np.uint8)
    x = img.astype(np.float32) / np.float32(255)
    fixed, per_pixel = backend.memory_model()
    limit = (fixed + 1600 * per_pixel) * MEM_SAFETY / 2 ** 20  # MB for tiles of 1600 px
    outs = [untransform(deblur_float(backend, np.ascontiguousarray(transform(x, k, f)), limit,
                                     overlap=8)[0], k, f) for k, f in TRANSFORMS]
    got, plan = deblur(backend, img, limit, overlap=8, ensemble=True)
    assert plan.tiled and got.shape == img.shape
    assert np.abs(got.astype(int) - to_uint8(np.mean(np.stack(outs), axis=0))).max() <= 1
