"""layers.metrics against analytic values and against references written here from the
published definitions (Wang et al. 2004; MATLAB ssim's documented 3-D Gaussian window)."""
import numpy as np
import pytest
from scipy import signal
from skimage import data as skdata
from skimage.metrics import structural_similarity

from layers import metrics
from layers.errors import MetricInputError

C1 = (0.01 * 255) ** 2
C2 = (0.03 * 255) ** 2


def _pair(shape, noise, seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, shape).astype(np.uint8)
    b = np.clip(a + rng.normal(0, noise, shape), 0, 255).astype(np.uint8)
    return a, b


def _photo_pair():
    """A real photo crop and a blurred + noisy version of it."""
    from scipy import ndimage
    img = skdata.astronaut()[100:164, 180:236]  # RGB uint8, 64 x 56
    blurred = ndimage.uniform_filter(img.astype(float), size=(3, 3, 1))
    noisy = blurred + np.random.default_rng(3).normal(0, 4, img.shape)
    return img, np.clip(np.round(noisy), 0, 255).astype(np.uint8)


# ---------- independent references ----------

def _ref_kernel(ndim, sigma=1.5):
    """MATLAB's getGaussianWeightingFilter: the full N-D grid, exp(-r^2/2s^2), normalised."""
    r = int(np.ceil(3 * sigma))
    grids = np.meshgrid(*([np.arange(-r, r + 1)] * ndim), indexing="ij")
    arg = -sum(g.astype(float) ** 2 for g in grids) / (2 * sigma * sigma)
    k = np.exp(arg)
    return k / k.sum(), r


def _ref_ssim_matlab(a, b):
    """One SSIM over the whole array with an N-D window, 'replicate' padding (np.pad 'edge')."""
    k, r = _ref_kernel(a.ndim)

    def blur(z):
        return signal.convolve(np.pad(z, r, mode="edge"), k, mode="valid", method="direct")

    x, y = a.astype(float), b.astype(float)
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx ** 2, blur(y * y) - my ** 2, blur(x * y) - mx * my
    smap = ((2 * mx * my + C1) * (2 * cxy + C2)) / ((mx ** 2 + my ** 2 + C1) * (vx + vy + C2))
    assert smap.shape == a.shape
    return smap.mean()


def _ref_ssim_valid_2d(a, b):
    """Wang et al.'s ssim_index.m style: 11x11 Gaussian, filter2 'valid', per channel mean."""
    k, _ = _ref_kernel(2)
    vals = []
    for c in range(a.shape[2]):
        x, y = a[..., c].astype(float), b[..., c].astype(float)

        def f(z):
            return signal.convolve2d(z, k, mode="valid")

        mx, my = f(x), f(y)
        vx, vy, cxy = f(x * x) - mx ** 2, f(y * y) - my ** 2, f(x * y) - mx * my
        vals.append((((2 * mx * my + C1) * (2 * cxy + C2))
                     / ((mx ** 2 + my ** 2 + C1) * (vx + vy + C2))).mean())
    return np.mean(vals)


# ---------- to_uint8 ----------

def test_to_uint8_rounds_half_up_and_clips():
    x = np.array([-0.2, 0.0, 0.5 / 255, 1.49 / 255, 254.5 / 255, 1.0, 1.7])
    assert metrics.to_uint8(x).tolist() == [0, 0, 1, 1, 255, 255, 255]
    assert metrics.to_uint8(x).dtype == np.uint8


def test_to_uint8_rejects_nan():
    with pytest.raises(MetricInputError, match="NaN"):
        metrics.to_uint8(np.array([0.1, np.nan]))


# ---------- PSNR ----------

def test_psnr_identical_is_inf():
    a, _ = _pair((16, 16, 3), 5, 0)
    assert metrics.psnr(a, a.copy()) == float("inf")


@pytest.mark.parametrize("delta,every", [(1, 1), (3, 2), (10, 7), (40, 3)])
def test_psnr_matches_analytic_value(delta, every):
    rng = np.random.default_rng(delta)
    a = rng.integers(50, 200, (24, 20, 3)).astype(np.uint8)  # no clipping after +-delta
    b = a.astype(int)
    flat = b.reshape(-1)
    idx = np.arange(0, flat.size, every)
    signs = np.where(rng.random(idx.size) < 0.5, -1, 1)
    flat[idx] += signs * delta
    b = b.astype(np.uint8)
    expected_mse = idx.size * delta ** 2 / a.size
    expected = 10 * np.log10(255.0 ** 2 / expected_mse)
    assert abs(metrics.psnr(a, b) - expected) < 0.01
    assert abs(metrics.psnr(a, b) - expected) < 1e-9


def test_psnr_rejects_float_and_shape_mismatch():
    a, b = _pair((8, 8, 3), 5, 1)
    with pytest.raises(MetricInputError, match="uint8"):
        metrics.psnr(a.astype(float), b)
    with pytest.raises(MetricInputError, match="shapes differ"):
        metrics.psnr(a, b[:4])


# ---------- SSIM ----------

@pytest.mark.parametrize("variant", metrics.SSIM_VARIANTS)
def test_ssim_identical_is_one(variant):
    a, _ = _pair((32, 24, 3), 5, 2)
    assert metrics.ssim(a, a.copy(), variant) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("shape,noise,seed", [((32, 40, 3), 20, 0), ((17, 23, 3), 8, 1),
                                              ((5, 6, 3), 30, 2), ((30, 30), 15, 3)])
def test_ssim_matlab3d_matches_reference(shape, noise, seed):
    a, b = _pair(shape, noise, seed)
    assert metrics.ssim(a, b, "matlab3d") == pytest.approx(_ref_ssim_matlab(a, b), abs=1e-10)


def test_ssim_matlab3d_matches_reference_on_photo():
    a, b = _photo_pair()
    got = metrics.ssim(b, a, "matlab3d")
    assert got == pytest.approx(_ref_ssim_matlab(b, a), abs=1e-10)
    assert 0.5 < got < 0.999


def test_ssim_matlab3d_is_not_the_channel_mean():
    """The 3-D window mixes channels: the value differs from the per-channel 2-D mean."""
    a, b = _photo_pair()
    per_channel = np.mean([metrics.ssim(a[..., c], b[..., c], "matlab3d") for c in range(3)])
    assert abs(metrics.ssim(a, b, "matlab3d") - per_channel) > 1e-4


def test_ssim_matlab3d_invariant_to_channel_reversal():
    """BGR is RGB reversed; the symmetric window and replicate padding make the value equal."""
    a, b = _pair((20, 20, 3), 25, 4)
    assert metrics.ssim(a[..., ::-1], b[..., ::-1]) == pytest.approx(metrics.ssim(a, b), abs=1e-12)


@pytest.mark.parametrize("pair", ["random", "photo"])
def test_ssim_skimage_variant_equals_skimage(pair):
    a, b = _pair((40, 33, 3), 12, 5) if pair == "random" else _photo_pair()
    golden = structural_similarity(a, b, channel_axis=-1, gaussian_weights=True, sigma=1.5,
                                   use_sample_covariance=False, data_range=255)
    assert metrics.ssim(a, b, "skimage") == pytest.approx(golden, abs=1e-10)


def test_ssim_basicsr_variant_matches_valid_mode_reference():
    a, b = _photo_pair()
    assert metrics.ssim(a, b, "basicsr") == pytest.approx(_ref_ssim_valid_2d(a, b), abs=1e-10)


def test_ssim_variants_are_labelled_and_differ():
    a, b = _photo_pair()
    assert metrics.DEFAULT_SSIM_VARIANT == "matlab3d"
    assert abs(metrics.ssim(a, b, "matlab3d") - metrics.ssim(a, b, "skimage")) > 1e-4


def test_ssim_decreases_with_noise():
    a, _ = _photo_pair()
    rng = np.random.default_rng(9)
    vals = []
    for sd in (2, 8, 32):
        b = np.clip(a + rng.normal(0, sd, a.shape), 0, 255).astype(np.uint8)
        vals.append(metrics.ssim(a, b))
    assert vals[0] > vals[1] > vals[2]


def test_ssim_errors():
    a, b = _pair((8, 8, 3), 5, 6)
    with pytest.raises(MetricInputError, match="unknown variant"):
        metrics.ssim(a, b, "matlab")
    for v in ("skimage", "basicsr"):
        with pytest.raises(MetricInputError, match="window"):
            metrics.ssim(a, b, v)
    with pytest.raises(MetricInputError, match="uint8"):
        metrics.ssim(a / 255.0, b / 255.0)


# ---------- batch helpers ----------

def test_batch_metrics_caps_inf_and_handles_bgr():
    a, b = _pair((2, 16, 16, 3), 10, 7)  # N x H x W x C, RGB
    pred = (b[..., ::-1].transpose(0, 3, 1, 2) / 255.0)  # -> N x C x H x W, BGR
    target = (a[..., ::-1].transpose(0, 3, 1, 2) / 255.0)
    p, s = metrics.batch_metrics(pred, target)
    assert p == pytest.approx(np.mean([metrics.psnr(b[i], a[i]) for i in range(2)]), abs=1e-9)
    assert s == pytest.approx(np.mean([metrics.ssim(b[i], a[i]) for i in range(2)]), abs=1e-12)
    p_same, s_same = metrics.batch_metrics(target, target, psnr_cap_db=100.0)
    assert p_same == 100.0 and s_same == pytest.approx(1.0)
    mixed = target.copy()
    mixed[1] = pred[1]
    p_mixed, _ = metrics.batch_metrics(mixed, target)
    assert p_mixed == pytest.approx((100.0 + metrics.psnr(b[1], a[1])) / 2, abs=1e-9)
