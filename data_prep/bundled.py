"""The embedded default data set: real photos that ship inside the scikit-image wheel.

The paper trains on VisDrone (drone photos) blurred synthetically. Those cannot ship with the code,
so the demo and the tests use the same synthetic recipe on photos that scikit-image 0.24 bundles in
its wheel (skimage/data/*, read offline; the images skimage fetches with pooch are not used):

  train:    astronaut, chelsea, hubble_deep_field, immunohistochemistry, motorcycle_left,
            motorcycle_right, brick, coins, grass, moon
  held-out: coffee, rocket, camera, gravel

Gray photos (brick, camera, coins, grass, gravel, moon) become 3 equal channels. The two
motorcycle views are near duplicates, so both stay on the training side. The demo evaluates on
the held-out photos only, which are never trained on.
"""
import functools

import cv2
import numpy as np

from .errors import DataPrepError

TRAIN = ("astronaut", "chelsea", "hubble_deep_field", "immunohistochemistry", "motorcycle_left",
         "motorcycle_right", "brick", "coins", "grass", "moon")
HELDOUT = ("coffee", "rocket", "camera", "gravel")
SPLITS = {"train": TRAIN, "heldout": HELDOUT, "test": HELDOUT, "all": TRAIN + HELDOUT}


def _load_rgb_or_gray(name):
    from skimage import data
    if name in ("motorcycle_left", "motorcycle_right"):
        left, right, _ = data.stereo_motorcycle()
        return left if name == "motorcycle_left" else right
    return getattr(data, name)()


@functools.lru_cache(maxsize=None)
def load(name):
    """One bundled photo as uint8 H x W x 3 BGR (read-only array)."""
    if name not in SPLITS["all"]:
        raise DataPrepError(f"unknown bundled photo {name!r}; choose from {', '.join(SPLITS['all'])}")
    img = np.asarray(_load_rgb_or_gray(name))
    if img.dtype != np.uint8:
        raise DataPrepError(f"bundled photo {name}: unexpected pixel type {img.dtype}")
    bgr = np.repeat(img[:, :, None], 3, axis=2) if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    bgr = np.ascontiguousarray(bgr)
    bgr.setflags(write=False)
    return bgr


def names(split="all"):
    """Names of the bundled photos in `split` ('train', 'heldout' (= 'test') or 'all')."""
    if split not in SPLITS:
        raise DataPrepError(f"bundled split must be one of {', '.join(SPLITS)}, got {split!r}")
    return list(SPLITS[split])


def bundled_photos(split="all"):
    """[(name, uint8 H x W x 3 BGR)] for the bundled photos of `split`."""
    return [(n, load(n)) for n in names(split)]
