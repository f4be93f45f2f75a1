"""Turn one source Item into its patches (runs inside the worker processes).

Real pairs: N random crops, the same window in the blurred and the sharp image.
Synthetic (sharp-only, bundled): the photo is resized once, then each of the N samples gets its
own recipe draw (kernel, augmentations, noise) and, if the crop is smaller than the rendered
image, its own random crop. Bad inputs raise a DataPrepError naming the file, or with
skip_bad are returned as a skip record so the converter can list them.
"""
from dataclasses import dataclass

import numpy as np

from . import bundled
from .errors import DataPrepError, ImageTooSmallError, PairMismatchError
from .imageio import read_image_with_notes
from .recipe import Recipe, render, sample_streams
from .resize import imresize


@dataclass(frozen=True)
class RenderJob:
    """What every item is turned into (shared by all workers)."""
    crops: int = 4
    crop_size: int = 256
    seed: int = 0
    recipe: Recipe = Recipe()
    skip_bad: bool = False
    split_id: int = 0    # 0 train, 1 test: keeps the two splits' random draws apart


@dataclass
class ItemResult:
    index: int
    name: str
    patches: list        # [(sample index, blurred HxWx3 uint8, sharp HxWx3 uint8, params dict)]
    skipped: str = ""    # reason when the item was skipped (skip_bad)
    notes: tuple = ()    # conversions made while reading (16-bit, gray, alpha ...)


def _check_crop(shape, crop, path, what="image"):
    h, w = shape[:2]
    if h < crop or w < crop:
        raise ImageTooSmallError(f"{path}: {what} is {w}x{h}, smaller than --crop-size {crop}; "
                                 "use a smaller --crop-size, or --skip-bad to skip such images")


def _crop_at(rng, shape, crop):
    h, w = shape[:2]
    return int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))


def _pair_patches(item, index, job, notes):
    blurred, nb = read_image_with_notes(item.blur)
    sharp, ns = read_image_with_notes(item.sharp)
    notes.extend(f"{item.blur}: {n}" for n in nb)
    notes.extend(f"{item.sharp}: {n}" for n in ns)
    if blurred.shape != sharp.shape:
        raise PairMismatchError(f"pair sizes differ: {item.blur} is {blurred.shape[1]}x{blurred.shape[0]} "
                                f"but {item.sharp} is {sharp.shape[1]}x{sharp.shape[0]}; "
                                "fix or remove the pair, or use --skip-bad to skip it")
    _check_crop(sharp.shape, job.crop_size, item.sharp)
    out = []
    for s in range(job.crops):
        crop_rng = sample_streams(job.seed, index, s, job.split_id)[3]
        y, x = _crop_at(crop_rng, sharp.shape, job.crop_size)
        win = (slice(y, y + job.crop_size), slice(x, x + job.crop_size))
        out.append((s, blurred[win].copy(), sharp[win].copy(),
                    {"crop_y": y, "crop_x": x, "source_size": f"{sharp.shape[1]}x{sharp.shape[0]}"}))
    return out


def _synthetic_patches(item, index, job, notes):
    if item.kind == "bundled":
        photo = bundled.load(item.sharp)
    else:
        photo, ns = read_image_with_notes(item.sharp)
        notes.extend(f"{item.sharp}: {n}" for n in ns)
    size = job.recipe.size
    base = imresize(photo, (size, size)) if size and photo.shape[:2] != (size, size) else photo
    _check_crop(base.shape, job.crop_size, item.sharp,
                what="rendered image" if size else "image")
    out = []
    for s in range(job.crops):
        streams = sample_streams(job.seed, index, s, job.split_id)
        blurred, sharp, params = render(base, job.recipe, streams)
        y, x = _crop_at(streams[3], sharp.shape, job.crop_size)
        win = (slice(y, y + job.crop_size), slice(x, x + job.crop_size))
        params = {"crop_y": y, "crop_x": x, "source_size": f"{photo.shape[1]}x{photo.shape[0]}", **params}
        out.append((s, np.ascontiguousarray(blurred[win]), np.ascontiguousarray(sharp[win]), params))
    return out


def render_item(job, index, item):
    """All patches of `item` (the index-th item of its split) as an ItemResult."""
    notes = []
    try:
        if item.kind == "pair":
            patches = _pair_patches(item, index, job, notes)
        else:
            patches = _synthetic_patches(item, index, job, notes)
    except DataPrepError as exc:
        if not job.skip_bad:
            raise
        return ItemResult(index, item.name, [], skipped=str(exc), notes=tuple(notes))
    return ItemResult(index, item.name, patches, notes=tuple(notes))
