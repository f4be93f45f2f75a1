"""PSNR/SSIM of deblurred outputs against sharp images, with the blurred input as baseline,
and the forward time of each image (Table IV style: after a warm-up, model load timed apart).

Images are read as uint8 BGR (data_prep.imageio), deblurred exactly as `mrfnet deblur` does
(inference.tiling.deblur: pad to stride, tile above the memory limit, quantise with
layers.metrics.to_uint8) and scored in RGB order with layers.metrics, so a number here is the
number one would get from the written PNGs. `backend=None` is the identity "deblurrer": the
blurred input itself is scored as the output (a check of the pipeline, and the baseline).
"""
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from data_prep.imageio import read_image, write_image
from layers.metrics import psnr, ssim

from .errors import EvaluationError

IDENTITY = "identity"


@dataclass
class ImageRow:
    backend: str
    name: str
    height: int
    width: int
    psnr: float
    ssim: float
    psnr_blur: float
    ssim_blur: float
    forward_s: float = float("nan")
    tiles: int = 0

    def as_dict(self):
        return asdict(self)


def score(out_bgr, sharp_bgr, ssim_variant):
    """(PSNR, SSIM) of two uint8 BGR images, computed in RGB order as MATLAB reads them."""
    a, b = out_bgr[..., ::-1], sharp_bgr[..., ::-1]
    return psnr(a, b), ssim(a, b, ssim_variant)


def read_pair(item):
    blur, sharp = read_image(item.blur), read_image(item.sharp)
    if blur.shape != sharp.shape:
        raise EvaluationError(f"{item.blur} is {blur.shape[1]}x{blur.shape[0]} but its sharp "
                              f"partner {item.sharp} is {sharp.shape[1]}x{sharp.shape[0]}")
    return blur, sharp


def evaluate(items, backend=None, ssim_variant="matlab3d", mem_limit_mb=None, overlap=None,
             warmup=True, save_dir=None, baseline=None, on_image=None):
    """Score every data_prep.sources Item; returns a list of ImageRow (one per item).

    `baseline` ({name: (psnr, ssim)}) lets a second backend reuse the blurred-input scores;
    it is filled in when given empty. `on_image(i, row)` is called after each image.
    """
    from inference.tiling import deblur

    name = backend.name if backend is not None else IDENTITY
    if backend is not None and warmup and items:
        deblur(backend, read_pair(items[0])[0], mem_limit_mb, overlap)  # warm-up, not timed
    baseline = {} if baseline is None else baseline
    rows = []
    for i, item in enumerate(items):
        blur, sharp = read_pair(item)
        if backend is None:
            out, dt, tiles = blur.copy(), float("nan"), 0
        else:
            t0 = time.perf_counter()
            out, plan = deblur(backend, blur, mem_limit_mb, overlap)
            dt, tiles = time.perf_counter() - t0, len(plan.tiles)
        if save_dir is not None:
            write_image(Path(save_dir) / name / (item.name.rsplit(".", 1)[0] + ".png"), out)
        if item.name not in baseline:
            baseline[item.name] = score(blur, sharp, ssim_variant)
        p, s = score(out, sharp, ssim_variant)
        pb, sb = baseline[item.name]
        row = ImageRow(name, item.name, blur.shape[0], blur.shape[1], p, s, pb, sb, dt, tiles)
        rows.append(row)
        if on_image:
            on_image(i, row)
    return rows


def summarize(rows):
    """Means over images of the scores and the forward time (NaN-free), plus counts."""
    if not rows:
        raise EvaluationError("no images were evaluated")
    f = [r.forward_s for r in rows if r.forward_s == r.forward_s]
    sizes = sorted({(r.height, r.width) for r in rows})
    return {
        "n_images": len(rows),
        "psnr": float(np.mean([r.psnr for r in rows])),
        "ssim": float(np.mean([r.ssim for r in rows])),
        "psnr_blur": float(np.mean([r.psnr_blur for r in rows])),
        "ssim_blur": float(np.mean([r.ssim_blur for r in rows])),
        "forward_mean_s": float(np.mean(f)) if f else None,
        "forward_median_s": float(np.median(f)) if f else None,
        "tiles_max": max(r.tiles for r in rows),
        "image_sizes": [list(s) for s in sizes],
    }
