"""The synthetic recipe: seeded reproducibility, the authors' parameter grid, augmentations, resize,
and the bundled photos."""
import numpy as np
import pytest

from data_prep import augment, bundled, recipe
from data_prep.kernels import fspecial_gaussian, fspecial_motion, imfilter_replicate_conv
from data_prep.resize import contributions, imresize

PHOTO = bundled.load("astronaut")[::4, ::4].copy()  # 128 x 128, keeps the tests fast


def render(seed, image=0, sample=0, rec=recipe.Recipe(size=64), photo=PHOTO):
    return recipe.render(photo, rec, recipe.sample_streams(seed, image, sample))


def test_same_seed_same_sample_different_seed_different():
    b1, s1, p1 = render(3)
    b2, s2, p2 = render(3)
    np.testing.assert_array_equal(b1, b2)
    np.testing.assert_array_equal(s1, s2)
    assert p1 == p2
    draws = {tuple(sorted(render(seed)[2].items())) for seed in range(8)}
    assert len(draws) > 4


def test_blur_is_gaussian_then_motion_with_recorded_parameters():
    blurred, sharp, p = render(1)
    assert sharp.shape == (64, 64, 3) and blurred.shape == sharp.shape
    np.testing.assert_array_equal(sharp, imresize(PHOTO, (64, 64)))
    g = fspecial_gaussian(p["gauss_hsize"], p["gauss_sigma"])
    m = fspecial_motion(p["motion_len"], p["motion_theta"])
    np.testing.assert_array_equal(blurred, imfilter_replicate_conv(imfilter_replicate_conv(sharp, g), m))


def test_parameters_cover_the_authors_grid_uniformly():
    rng = np.random.default_rng(0)
    draws = [recipe.draw_authors_blur(rng) for _ in range(3000)]
    assert {d["gauss_hsize"] for d in draws} == {1, 2, 3, 4, 5}
    assert {d["gauss_sigma"] for d in draws} == {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0}
    assert {d["motion_len"] for d in draws} == {5, 10, 15, 20, 25, 30}
    assert {d["motion_theta"] for d in draws} == set(range(0, 346, 15))
    lens = np.array([d["motion_len"] for d in draws])
    assert np.bincount(lens // 5)[1:].min() > 3000 / 6 * 0.8  # roughly uniform


def test_sample_streams_are_independent_of_each_other():
    # switching noise on must not change the kernel drawn for the same sample
    plain = render(5)[2]
    noisy = render(5, rec=recipe.Recipe(size=64, augment=("noise",)))[2]
    assert {k: plain[k] for k in plain} == {k: noisy[k] for k in plain}
    assert noisy["noise_std"] >= 0


def test_shake_blur_alternative():
    b, s, p = render(2, rec=recipe.Recipe(size=64, blur="shake", shake_size=15))
    assert p["blur_kind"] == "shake" and p["shake_size"] == 15
    assert np.abs(b.astype(int) - s).mean() > 0.5


def test_flip_rot_perm_act_on_the_sharp_image_before_blur():
    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    for seed in range(12):
        out, p = augment.augment_scene(img, ("flip", "rot90", "perm"), np.random.default_rng(seed))
        want = img[:, ::-1] if p["flip_h"] else img
        want = want[::-1] if p["flip_v"] else want
        want = np.rot90(want, p["rot90"] // 90)
        want = want[:, :, ["BGR".index(ch) for ch in p["channels"]]]
        np.testing.assert_array_equal(out, want)


def test_saturation_scaling():
    img = np.array([[[40, 80, 200], [100, 100, 100]]], np.uint8)
    gray = augment.scale_saturation(img, 0.0)
    assert np.ptp(gray[0, 0]) <= 1 and gray[0, 0].max() == 200   # V kept, colour gone
    np.testing.assert_array_equal(augment.scale_saturation(img, 1.0), img)
    np.testing.assert_array_equal(augment.scale_saturation(img, 5.0)[0, 1], img[0, 1])  # gray stays gray
    assert augment.scale_saturation(img, 5.0)[0, 0, 0] == 0      # S clipped to 1: min channel -> 0


def test_noise_std_is_abs_standard_normal():
    stds = [augment.add_noise(np.full((4, 4), 128, np.uint8), np.random.default_rng(s))[1] for s in range(400)]
    assert min(stds) >= 0 and np.mean(stds) == pytest.approx(np.sqrt(2 / np.pi), abs=0.1)


def test_parse_augment():
    assert augment.parse_augment("all") == augment.ALL_AUGMENTATIONS
    assert augment.parse_augment("none") == ()
    assert augment.parse_augment("flip, noise") == ("flip", "noise")
    with pytest.raises(ValueError, match="unknown blurry"):
        augment.parse_augment("flip,blurry")


def test_recipe_rejects_unknown_blur_kind():
    with pytest.raises(ValueError, match="--blur-kind"):
        recipe.Recipe(blur="wobble")


# ---------------------------------------------------------------------------- resize

def test_resize_upscale_weights_by_hand():
    # 4 -> 8: output pixel 1 samples u = 0.75; Keys cubic at distances 1.75, 0.75, 0.25, 1.25
    w, idx = contributions(4, 8)
    t = np.array([1.75, 0.75, 0.25, 1.25])
    cubic = np.where(t <= 1, 1.5 * t ** 3 - 2.5 * t ** 2 + 1, -0.5 * t ** 3 + 2.5 * t ** 2 - 4 * t + 2)
    np.testing.assert_allclose(w[0], cubic / cubic.sum())
    np.testing.assert_array_equal(idx[0], [1, 0, 0, 1])  # input positions -1, 0 mirrored to 1, 0


def test_resize_downscale_is_antialiased():
    # shrinking by 2: the kernel is stretched to 8 taps, so a 1-pixel checkerboard averages to gray
    checker = (np.indices((32, 32)).sum(0) % 2 * 255).astype(np.uint8)
    small = imresize(checker, (16, 16))
    assert np.abs(small[2:-2, 2:-2].astype(int) - 128).max() <= 1
    const = np.full((30, 50, 3), 77, np.uint8)
    np.testing.assert_array_equal(imresize(const, (256, 256)), np.full((256, 256, 3), 77))


# ---------------------------------------------------------------------------- bundled

def test_bundled_photos_are_real_colour_images_with_a_fixed_split():
    train, held = bundled.names("train"), bundled.names("heldout")
    assert not set(train) & set(held) and len(held) >= 3 and len(train) >= 8
    photos = dict(bundled.bundled_photos())
    assert set(photos) == set(train) | set(held)
    for name, img in photos.items():
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3, name
        assert min(img.shape[:2]) >= 256, name   # large enough for a 256 x 256 crop
    # chelsea is RGB on disk: the BGR copy has the red channel last
    from skimage import data
    np.testing.assert_array_equal(photos["chelsea"][:, :, 2], data.chelsea()[:, :, 0])
