"""The paper's extra augmentations (Sec. IV-A, VisDrone), as we read them.

The paper: "the images are flipped horizontally, vertically, and rotated at random angles. For the
colors, the RGB channels are replaced randomly. For the image color degradation, the saturation in
the HSV color space is multiplied by a random number in [0, 5]. ... the standard deviation of noise
is also randomly sampled from the Gaussian distribution N(0, 1)."

Our reading (each one optional, each drawn from its own random stream so that switching one on
does not change the others' draws):
- scene changes are applied to the sharp image BEFORE blurring, so blurred and sharp stay a pair:
  horizontal flip (p = 1/2), vertical flip (p = 1/2), rotation by a random multiple of 90 degrees
  ("random angles" without interpolation or invented borders; a square stays square),
  a random permutation of the three colour channels, and HSV saturation x s with s ~ U[0, 5]
  (S clipped to 1; computed in float, rounded back to uint8);
- noise is added to the BLURRED image only, after blurring: i.i.d. Gaussian with standard
  deviation |z| 8-bit levels, z ~ N(0, 1) (so typically below 2 levels), rounded and clipped.
"""
import itertools

import cv2
import numpy as np

from .errors import DataPrepError
from .kernels import round_half_away

SCENE_AUGMENTATIONS = ("flip", "rot90", "perm", "saturation")
ALL_AUGMENTATIONS = SCENE_AUGMENTATIONS + ("noise",)
PERMUTATIONS = list(itertools.permutations(range(3)))


def parse_augment(text):
    """'none' | 'all' | comma list of ALL_AUGMENTATIONS -> tuple of names (for --augment)."""
    text = (text or "none").strip().lower()
    if text == "none":
        return ()
    if text == "all":
        return ALL_AUGMENTATIONS
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    bad = [n for n in names if n not in ALL_AUGMENTATIONS]
    if bad:
        raise DataPrepError(f"--augment: unknown {', '.join(bad)}; choose from "
                         f"{', '.join(ALL_AUGMENTATIONS)}, 'all' or 'none'")
    return names


def scale_saturation(img, factor):
    """Multiply the HSV saturation of uint8 BGR `img` by `factor` (clipped to 1)."""
    hsv = cv2.cvtColor(img.astype(np.float32) / 255.0, cv2.COLOR_BGR2HSV)
    hsv[:, :, 1] = np.clip(hsv[:, :, 1] * factor, 0.0, 1.0)
    bgr = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR) * 255.0
    return np.clip(round_half_away(bgr.astype(np.float64)), 0, 255).astype(np.uint8)


def augment_scene(img, names, rng):
    """Apply the scene augmentations in `names` to uint8 BGR `img`; return (image, params)."""
    params = {}
    draws = rng.random(3)
    k = int(rng.integers(4))
    perm = PERMUTATIONS[int(rng.integers(len(PERMUTATIONS)))]
    sat = float(rng.uniform(0.0, 5.0))
    if "flip" in names:
        params["flip_h"] = int(draws[0] < 0.5)
        params["flip_v"] = int(draws[1] < 0.5)
        if params["flip_h"]:
            img = img[:, ::-1]
        if params["flip_v"]:
            img = img[::-1]
    if "rot90" in names:
        params["rot90"] = k * 90
        img = np.rot90(img, k)
    if "perm" in names:
        params["channels"] = "".join("BGR"[i] for i in perm)  # new B,G,R taken from these
        img = img[:, :, list(perm)]
    img = np.ascontiguousarray(img)
    if "saturation" in names:
        params["saturation"] = sat
        img = scale_saturation(img, sat)
    return img, params


def add_noise(img, rng):
    """Add Gaussian noise with std |N(0,1)| levels to uint8 `img`; return (image, std)."""
    std = abs(float(rng.standard_normal()))
    noisy = img.astype(np.float64) + rng.standard_normal(img.shape) * std
    return np.clip(round_half_away(noisy), 0, 255).astype(np.uint8), std
