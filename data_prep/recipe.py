"""The authors' synthetic-blur recipe, seeded and reproducible, one sample at a time.

Per sample (MATLAB script of the authors, see docs/data.md):
  1. resize the sharp photo to size x size (256; MATLAB imresize, bicubic + antialiasing);
  2. optional scene augmentations on the sharp image (augment.py);
  3. Gaussian blur: fspecial('gaussian', hsize, sigma), hsize ~ U{1..5}, sigma ~ U{0.1, ..., 1.0};
  4. then motion blur: fspecial('motion', len, theta), len ~ U{5, 10, ..., 30},
     theta ~ U{0, 15, ..., 345} degrees;
     both applied as imfilter(uint8, psf, 'replicate', 'conv');
     (alternative blur "shake": one Boracchi-Foi camera-shake kernel instead of 3-4);
  5. optional noise on the blurred image.
Every draw comes from numpy's PCG64 seeded by (seed, split, image index, sample index), with separate
streams for the blur, the scene augmentations, the noise and the crop, so a sample can be
re-rendered from its row in params.csv and results do not depend on the number of workers.
"""
from dataclasses import dataclass, field

import numpy as np

from . import augment, kernels
from .errors import DataPrepError
from .resize import imresize

GAUSSIAN_HSIZES = (1, 2, 3, 4, 5)
GAUSSIAN_SIGMAS = tuple(round(0.1 * k, 1) for k in range(1, 11))
MOTION_LENGTHS = tuple(range(5, 31, 5))
MOTION_THETAS = tuple(range(0, 346, 15))
BLUR_KINDS = ("authors", "shake")


@dataclass(frozen=True)
class Recipe:
    """Options of the synthetic recipe (defaults = the authors' MATLAB script)."""
    size: int = 256                    # resize to size x size; 0 keeps the photo's own size
    blur: str = "authors"              # "authors" (gaussian then motion) or "shake" (Boracchi-Foi)
    augment: tuple = field(default=())  # names from augment.ALL_AUGMENTATIONS
    shake_size: int = 31

    def __post_init__(self):
        if self.blur not in BLUR_KINDS:
            raise DataPrepError(f"--blur-kind must be one of {', '.join(BLUR_KINDS)}, got {self.blur!r}")
        if self.size < 0:
            raise DataPrepError(f"--size must be >= 0, got {self.size}")


def sample_streams(seed, image_index, sample_index, split_id=0):
    """Independent generators (blur, scene, noise, crop) for one sample."""
    ss = np.random.SeedSequence([int(seed), int(split_id), int(image_index), int(sample_index)])
    return [np.random.Generator(np.random.PCG64(s)) for s in ss.spawn(4)]


def draw_authors_blur(rng):
    """The authors' random kernel parameters: dict with gauss_hsize, gauss_sigma, motion_len, motion_theta."""
    return {"gauss_hsize": int(rng.choice(GAUSSIAN_HSIZES)),
            "gauss_sigma": float(rng.choice(GAUSSIAN_SIGMAS)),
            "motion_len": int(rng.choice(MOTION_LENGTHS)),
            "motion_theta": int(rng.choice(MOTION_THETAS))}


def apply_authors_blur(sharp, p):
    """Gaussian then motion blur of uint8 `sharp` with parameters `p` (from draw_authors_blur)."""
    g = kernels.fspecial_gaussian(p["gauss_hsize"], p["gauss_sigma"])
    m = kernels.fspecial_motion(p["motion_len"], p["motion_theta"])
    return kernels.imfilter_replicate_conv(kernels.imfilter_replicate_conv(sharp, g), m)


def render(photo, recipe, streams):
    """One synthetic pair from uint8 BGR `photo`: (blurred, sharp, params dict)."""
    blur_rng, scene_rng, noise_rng = streams[:3]
    sharp = photo
    params = {"blur_kind": recipe.blur}
    if recipe.size and photo.shape[:2] != (recipe.size, recipe.size):
        sharp = imresize(photo, (recipe.size, recipe.size))  # callers may pass it pre-resized
    scene = [n for n in recipe.augment if n in augment.SCENE_AUGMENTATIONS]
    if scene:
        sharp, aug = augment.augment_scene(sharp, scene, scene_rng)
        params.update(aug)
    if recipe.blur == "authors":
        p = draw_authors_blur(blur_rng)
        blurred = apply_authors_blur(sharp, p)
    else:
        psf, p = kernels.random_shake_kernel(blur_rng, size=recipe.shake_size)
        blurred = kernels.imfilter_replicate_conv(sharp, psf)
    params.update(p)
    if "noise" in recipe.augment:
        blurred, std = augment.add_noise(blurred, noise_rng)
        params["noise_std"] = std
    return blurred, sharp, params
