"""Padding to the stride and tiling: output size == input size, tiles cover the image on the
stride grid within the memory limit, and tiled output == untiled output away from the seams."""
import numpy as np
import pytest

from inference.backends import load
from inference.errors import InferenceError
from inference.tiling import (MEM_SAFETY, deblur_float, max_tile_pixels, pad_to_stride,
                              plan_for, plan_tiles)
from test_inference_fixtures import make_model

# Away from seams (every tile that contributes to a pixel sees the pixel's whole receptive
# field) tiled and untiled outputs may differ only by float32 rounding:
FAR_FROM_SEAMS_TOL = 1e-5


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    return load(*make_model(tmp_path_factory.mktemp("models")), "caffe")


def test_pad_to_stride_reflects_and_keeps_the_original():
    img = np.arange(5 * 7 * 3, dtype=np.float32).reshape(5, 7, 3)
    padded, (h, w) = pad_to_stride(img, 4)
    assert padded.shape == (8, 8, 3) and (h, w) == (5, 7)
    assert np.array_equal(padded[:5, :7], img)
    assert np.array_equal(padded[5:8, :7], img[[3, 2, 1], :])  # reflection, edge not repeated
    assert np.array_equal(padded[:5, 7], img[:, 5])
    tiny, _ = pad_to_stride(np.ones((1, 1, 3), np.float32), 8)  # 1 px: no reflection possible
    assert tiny.shape == (8, 8, 3) and (tiny == 1).all()


@pytest.mark.parametrize("h,w,stride,max_px,overlap", [
    (3000, 4000, 8, 700 * 700, 128), (720, 1280, 8, 300 * 300, 64), (64, 2048, 2, 64 * 200, 32),
    (96, 96, 2, 96 * 96, 32)])
def test_plan_covers_on_the_stride_grid_within_the_limit(h, w, stride, max_px, overlap):
    plan = plan_tiles(h, w, stride, max_px, overlap)
    covered = np.zeros((h, w), np.int32)
    for y0, y1, x0, x1 in plan.tiles:
        assert (y1 - y0) * (x1 - x0) <= max_px
        assert all(v % stride == 0 for v in (y0, y1, x0, x1))
        assert 0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w
        covered[y0:y1, x0:x1] += 1
    assert covered.min() >= 1
    for axis in (0, 1):  # neighbours overlap by at least `overlap`
        spans = sorted({(t[2 * axis], t[2 * axis + 1]) for t in plan.tiles})
        for (a0, a1), (b0, b1) in zip(spans, spans[1:]):
            assert a1 - b0 >= overlap
    assert plan.tiled == (h * w > max_px)


def test_too_small_a_memory_limit_is_refused_with_advice():
    with pytest.raises(InferenceError, match="raise --tile-mem"):
        plan_tiles(512, 512, 8, 100 * 100, 128)


def _receptive_radius(backend, size=96):
    """Largest distance at which one input pixel changes the output (impulse response)."""
    x = np.full((1, 3, size, size), 0.5, np.float32)
    base = backend.forward(x)
    x[0, :, size // 2, size // 2] = 1.0
    changed = np.abs(backend.forward(x) - base).max(axis=(0, 1)) > 0
    ys, xs = np.nonzero(changed)
    return int(max(abs(ys - size // 2).max(), abs(xs - size // 2).max()))


def test_tiled_equals_untiled_away_from_seams(backend):
    radius = _receptive_radius(backend)  # 25 px for the P=2 net
    assert 4 <= radius < 48
    img = np.random.default_rng(3).random((150, 173, 3), dtype=np.float32)
    untiled, plan1 = deblur_float(backend, img, mem_limit_mb=10_000)
    fixed, per_pixel = backend.memory_model()
    limit = (fixed + per_pixel * 110 * 110) * MEM_SAFETY / 2 ** 20  # room for ~110 px tiles
    tiled, plan = deblur_float(backend, img, mem_limit_mb=limit, overlap=2 * radius)
    assert not plan1.tiled and len(plan.tiles) >= 4
    assert tiled.shape == untiled.shape == img.shape

    # pixels that every tile containing them sees with >= radius context on interior sides
    h, w = img.shape[:2]
    ok = np.ones((h, w), bool)
    for y0, y1, x0, x1 in plan.tiles:
        inside = np.zeros((h, w), bool)
        inside[y0:min(y1, h), x0:min(x1, w)] = True
        safe = np.zeros((h, w), bool)
        sy0 = y0 + radius if y0 > 0 else 0
        sx0 = x0 + radius if x0 > 0 else 0
        sy1 = y1 - radius if y1 < plan.height else h
        sx1 = x1 - radius if x1 < plan.width else w
        safe[sy0:max(sy0, sy1), sx0:max(sx0, sx1)] = True
        ok &= ~inside | safe
    assert ok.mean() > 0.2
    diff = np.abs(tiled - untiled).max(axis=2)
    assert diff[ok].max() <= FAR_FROM_SEAMS_TOL
    assert diff[~ok].max() > FAR_FROM_SEAMS_TOL  # the seams are where tiling shows, if anywhere


def test_a_4000x3000_photo_is_planned_within_the_default_limit(tmp_path):
    """MRFNet P=4 needs ~2.9 KB per pixel in Caffe even with blob reuse (~35 GB for 12 MP
    untiled): it must tile."""
    big = load(*make_model(tmp_path, paths=4), "caffe")
    fixed, per_pixel = big.memory_model()
    assert per_pixel * 4000 * 3000 > 24 * 2 ** 30
    plan = plan_for(big, 3000, 4000, mem_limit_mb=4096)
    assert plan.tiled
    biggest = max((y1 - y0) * (x1 - x0) for y0, y1, x0, x1 in plan.tiles)
    assert biggest <= max_tile_pixels(big, 4096)
    assert (fixed + per_pixel * biggest) * MEM_SAFETY <= 4096 * 2 ** 20
