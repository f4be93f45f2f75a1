"""Blur kernels and imfilter against GNU Octave goldens, hand derivations and physical properties.

Goldens (tests/golden/data_kernels.json) were made once by tests/golden/make_data_kernel_goldens.py:
Octave's fspecial('gaussian') and imfilter(uint8, psf, 'replicate', 'conv') are the oracle for the
Gaussian kernel and the filtering; Octave's fspecial('motion') is not MATLAB's, so motion kernels are
checked by values derived by hand from MATLAB's algorithm and by properties of a line segment.

The 144 motion-kernel "goldens" (GOLDEN["motion"]) are NOT an oracle: the golden script wrote them
from this project's own fspecial_motion. test_motion_grid_goldens is a change detector (it fails
when the kernels change, right or wrong); the real checks of the motion kernels are the
hand-derived values and the line-segment properties below.
"""
import json
import math
from pathlib import Path

import numpy as np
import pytest

from data_prep import kernels
from data_prep.kernels import fspecial_gaussian, fspecial_motion, imfilter_replicate_conv

GOLDEN = json.loads((Path(__file__).parent / "golden" / "data_kernels.json").read_text())
GRID = [(length, theta) for length in range(5, 31, 5) for theta in range(0, 346, 15)]


def golden_test_image():
    """The 13x11x3 image the goldens were filtered with (same formula as the golden script)."""
    y, x, c = np.meshgrid(np.arange(13), np.arange(11), np.arange(3), indexing="ij")
    return ((x * 37 + y * 91 + c * 53 + (x * y) % 7 * 29) % 256).astype(np.uint8)


# ------------------------------------------------------------------------------- Gaussian

@pytest.mark.parametrize("entry", GOLDEN["gaussian"], ids=lambda e: f"h{e['hsize']}s{e['sigma']}")
def test_gaussian_matches_octave(entry):
    got = fspecial_gaussian(entry["hsize"], entry["sigma"])
    want = np.array(entry["kernel"])
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-15)


def test_gaussian_even_size_uses_half_integer_grid():
    # hsize 2: grid -0.5, 0.5 -> four equal weights; hsize 4, sigma 1: weights ~ exp(-(x^2+y^2)/2)
    np.testing.assert_array_equal(fspecial_gaussian(2, 0.7), np.full((2, 2), 0.25))
    g = fspecial_gaussian(4, 1.0)
    w = np.exp(-np.array([1.5, 0.5, 0.5, 1.5]) ** 2 / 2)
    np.testing.assert_allclose(g, np.outer(w, w) / np.outer(w, w).sum(), atol=1e-16)


def test_gaussian_drops_entries_below_eps_like_matlab():
    # sigma 0.1: neighbours exp(-50) ~ 2e-22 < eps * max, MATLAB sets them to exactly 0
    np.testing.assert_array_equal(fspecial_gaussian(3, 0.1), np.pad([[1.0]], 1))


# ------------------------------------------------------------------------------- motion

def test_motion_sizes_from_the_matlab_documentation():
    np.testing.assert_allclose(fspecial_motion(5, 0), np.full((1, 5), 0.2), atol=1e-15)
    assert fspecial_motion(5, 45).shape == (5, 5)
    assert fspecial_motion(30, 15).shape == (9, 31)


def test_motion_len10_horizontal_and_vertical_by_hand():
    # half = 4.5: pixels 0..4 from the centre get weight 1, pixel 5 is 0.5 past the end -> 0.5
    want = np.array([[0.5] + [1.0] * 9 + [0.5]]) / 10.0
    np.testing.assert_allclose(fspecial_motion(10, 0), want, atol=1e-15)
    np.testing.assert_allclose(fspecial_motion(10, 90), want.T, atol=1e-15)
    np.testing.assert_allclose(fspecial_motion(10, 180), want, atol=1e-15)


def test_motion_len5_45_degrees_by_hand():
    r = math.sqrt(0.5)
    a = 1.0                                           # on the line
    b = 1.0 - r                                       # one pixel off the diagonal
    c = 1.0 - math.sqrt(0.5 + (2.0 - 1.5 / r) ** 2)  # (2,1): beyond the end point
    e = 1.0 - (2.0 / r - 2.0)                         # (2,2): 2*sqrt(2) - 2 past the end
    raw = np.array([[0, 0, 0, c, e],
                    [0, 0, b, a, c],
                    [0, b, a, b, 0],
                    [c, a, b, 0, 0],
                    [e, c, 0, 0, 0]])
    np.testing.assert_allclose(fspecial_motion(5, 45), raw / raw.sum(), atol=1e-12)
    # 135 degrees is the mirror image
    np.testing.assert_allclose(fspecial_motion(5, 135), (raw / raw.sum())[:, ::-1], atol=1e-12)


@pytest.mark.parametrize("entry", GOLDEN["motion"], ids=lambda e: f"len{e['len']}th{e['theta']}")
def test_motion_grid_goldens(entry):
    """Change detector, not a correctness check: these records were produced by fspecial_motion
    itself (tests/golden/make_data_kernel_goldens.py). A failure says the kernels changed; whether
    the change is right is for the hand-derived and property tests to say."""
    k = fspecial_motion(entry["len"], entry["theta"])
    assert list(k.shape) == entry["shape"]
    assert np.count_nonzero(k) == entry["nonzeros"]
    assert k.sum() == pytest.approx(entry["sum"], abs=1e-14)
    assert k[k.shape[0] // 2, k.shape[1] // 2] == pytest.approx(entry["centre"], abs=1e-15)


def test_golden_grid_covers_the_recipe():
    assert sorted((e["len"], e["theta"]) for e in GOLDEN["motion"]) == sorted(GRID)


@pytest.mark.parametrize("length,theta", GRID)
def test_motion_kernel_is_a_centred_line_of_the_right_length_and_angle(length, theta):
    k = fspecial_motion(length, theta)
    assert k.shape[0] % 2 == 1 and k.shape[1] % 2 == 1
    assert k.min() >= 0 and k.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(k, k[::-1, ::-1], atol=1e-15)  # point symmetric
    np.testing.assert_array_equal(k, fspecial_motion(length, theta + 180))
    rows, cols = np.indices(k.shape)
    y = (k.shape[0] - 1) / 2 - rows          # y grows upwards: theta is counter-clockwise
    x = cols - (k.shape[1] - 1) / 2
    cxx, cyy, cxy = (k * x * x).sum(), (k * y * y).sum(), (k * x * y).sum()
    angle = math.degrees(0.5 * math.atan2(2 * cxy, cxx - cyy)) % 180
    assert abs((angle - theta % 180 + 90) % 180 - 90) < 2.0
    spread = 0.5 * (cxx + cyy) + math.sqrt(0.25 * (cxx - cyy) ** 2 + cxy ** 2)
    assert math.sqrt(12 * spread) == pytest.approx(length, abs=0.5)  # uniform segment: var = L^2/12


# ------------------------------------------------------------------------------- imfilter

@pytest.mark.parametrize("entry", GOLDEN["imfilter"], ids=lambda e: e["name"].replace(" ", "_"))
def test_imfilter_matches_octave_bit_for_bit(entry):
    name = entry["name"].split()
    if name[0] == "gaussian":
        k = fspecial_gaussian(int(name[1]), float(name[2]))
    else:
        k = np.array(entry["kernel"])
    img = golden_test_image()
    want = np.array(entry["result"], dtype=np.uint8)
    np.testing.assert_array_equal(imfilter_replicate_conv(img, k), want)
    np.testing.assert_array_equal(imfilter_replicate_conv(img[:, :, 2], k), want[:, :, 2])


@pytest.mark.parametrize("shape", [(3, 3), (2, 2), (4, 4), (3, 4)])
def test_imfilter_impulse_response_and_even_origin(shape):
    # convolution copies the kernel (unrotated) around an impulse; its origin is the element
    # (s - floor((s+1)/2)) (0-based) along each axis: the centre for odd s, below/right of it for even s
    kernel = np.arange(1, shape[0] * shape[1] + 1, dtype=np.float64).reshape(shape) / 100.0
    img = np.zeros((9, 9), np.uint8)
    img[4, 4] = 100
    out = imfilter_replicate_conv(img, kernel)
    oy, ox = shape[0] - (shape[0] + 1) // 2, shape[1] - (shape[1] + 1) // 2
    want = np.zeros((9, 9), np.uint8)
    want[4 - oy:4 - oy + shape[0], 4 - ox:4 - ox + shape[1]] = np.round(kernel * 100).astype(np.uint8)
    np.testing.assert_array_equal(out, want)


def test_imfilter_rounds_half_away_from_zero_and_saturates():
    img = np.full((4, 5), 5, np.uint8)
    np.testing.assert_array_equal(imfilter_replicate_conv(img, [[0.5]]), np.full((4, 5), 3))  # 2.5 -> 3
    np.testing.assert_array_equal(imfilter_replicate_conv(img, [[0.7]]), np.full((4, 5), 4))  # 3.5 -> 4
    np.testing.assert_array_equal(imfilter_replicate_conv(img, [[60.0]]), np.full((4, 5), 255))
    np.testing.assert_array_equal(imfilter_replicate_conv(img, [[-1.0]]), np.zeros((4, 5)))


def test_imfilter_replicates_the_border():
    img = np.zeros((5, 6), np.uint8)
    img[:, 0] = 200  # a bright left column: replicate padding keeps it bright at the edge
    out = imfilter_replicate_conv(img, np.full((1, 3), 1 / 3))
    assert out[0, 0] == round(200 * 2 / 3) and out[0, 1] == round(200 / 3) and out[0, 2] == 0


def test_imfilter_rejects_non_uint8():
    with pytest.raises(ValueError, match="uint8"):
        imfilter_replicate_conv(np.zeros((3, 3)), [[1.0]])


# ------------------------------------------------------------------------------- camera shake

def test_shake_kernel_is_reproducible_normalised_and_compact():
    k1, p1 = kernels.random_shake_kernel(np.random.default_rng(5), size=31)
    k2, p2 = kernels.random_shake_kernel(np.random.default_rng(5), size=31)
    k3, _ = kernels.random_shake_kernel(np.random.default_rng(6), size=31)
    np.testing.assert_array_equal(k1, k2)
    assert p1 == p2 and not np.array_equal(k1, k3)
    assert k1.shape == (31, 31) and k1.min() >= 0 and k1.sum() == pytest.approx(1.0)
    for seed in range(5):
        k, _ = kernels.random_shake_kernel(np.random.default_rng(seed), size=31)
        rows, cols = np.nonzero(k > 1e-3 * k.max())
        assert max(np.ptp(rows), np.ptp(cols)) >= 4   # a path, not a point


def test_trajectory_has_the_requested_length():
    path = kernels.random_trajectory(np.random.default_rng(1), length=20.0, num_steps=500)
    assert np.abs(np.diff(path)).sum() == pytest.approx(20.0, rel=1e-9)
