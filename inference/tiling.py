"""Run a net on an image of any size: pad to the stride, and tile when memory would run out.

Why each step:
- The net halves the image P-1 times, so H and W must be multiples of its stride 2^(P-1). The
  image is padded at the bottom/right by reflection (no hard edge for the convolutions to see)
  and the output cropped back, so output size == input size.
- A forward pass needs memory proportional to the pixel count (`Backend.memory_model()`); above
  `mem_limit_mb` the padded image is cut into overlapping tiles whose origins and sizes are
  multiples of the stride (so every tile sees the same down-sampling grid as the whole image),
  and the tile outputs are blended with linear (feathered) weights across each overlap, so no
  hard seam appears.

Arrays here are H x W x 3 float32, BGR, [0, 1] (the inference convention); only `_forward`
reshapes to the backends' 1 x 3 x H x W.
"""
import math
from dataclasses import dataclass

import numpy as np

from mrfnet.sysmem import available_bytes

from .errors import InferenceError

DEFAULT_MEM_LIMIT_MB = 4096
MEM_SAFETY = 1.15  # the estimate leaves out allocator overhead and small per-layer buffers


def default_mem_limit_mb():
    """4 GB, or half the memory currently available if that is less (Linux /proc/meminfo)."""
    avail = available_bytes()
    if avail is None:
        return DEFAULT_MEM_LIMIT_MB
    return min(DEFAULT_MEM_LIMIT_MB, avail // 2 ** 20 // 2)


def default_overlap(stride):
    """Overlap between tiles: 16 stride steps (P=4: 128 px), at least 32 px."""
    return max(32, 16 * stride)


def round_up(n, m):
    return -(-n // m) * m


def pad_to_stride(img, stride):
    """Reflect-pad H x W x C at the bottom/right to multiples of `stride`.

    Returns (padded, (h, w)) with the original size for cropping back.
    """
    h, w = img.shape[:2]
    ph, pw = round_up(h, stride) - h, round_up(w, stride) - w
    if ph or pw:
        img = np.pad(img, ((0, ph), (0, pw)) + ((0, 0),) * (img.ndim - 2), mode="reflect")
    return img, (h, w)


@dataclass(frozen=True)
class TilePlan:
    """Tiles (y0, y1, x0, x1) covering a padded image of size (height, width)."""

    height: int
    width: int
    tiles: tuple
    overlap: int

    @property
    def tiled(self):
        return len(self.tiles) > 1


def _starts(n, tile, overlap, stride):
    """Origins (multiples of stride) of tiles of length `tile` covering [0, n) with >= overlap."""
    if tile >= n:
        return [0]
    step = tile - overlap - stride  # room for rounding each origin to the stride grid
    if step < stride:
        raise InferenceError(f"tile {tile} px is too small for an overlap of {overlap} px")
    k = math.ceil((n - tile) / step) + 1
    return [int(round(v / stride)) * stride for v in np.linspace(0, n - tile, k)]


def plan_tiles(height, width, stride, max_pixels, overlap=None):
    """Split a padded height x width image into as few tiles as fit `max_pixels` each."""
    if height % stride or width % stride:
        raise InferenceError(f"plan_tiles: {height}x{width} is not a multiple of stride {stride}")
    overlap = default_overlap(stride) if overlap is None else round_up(int(overlap), stride)
    if height * width <= max_pixels:
        return TilePlan(height, width, ((0, height, 0, width),), overlap)
    side = (math.isqrt(int(max_pixels)) // stride) * stride
    if height <= side:  # a wide strip: full-height tiles
        th, tw = height, min(width, (int(max_pixels) // height // stride) * stride)
    elif width <= side:
        th, tw = min(height, (int(max_pixels) // width // stride) * stride), width
    else:
        th = tw = side
    least = 2 * overlap + 2 * stride
    if (th < height and th < least) or (tw < width and tw < least):
        raise InferenceError(
            f"the memory limit allows tiles of only {int(max_pixels)} pixels, too few for tiles "
            f"of at least {least} px a side with {overlap} px overlap; raise --tile-mem")
    tiles = tuple((y, y + th, x, x + tw) for y in _starts(height, th, overlap, stride)
                  for x in _starts(width, tw, overlap, stride))
    return TilePlan(height, width, tiles, overlap)


def _ramp(lo, hi, start, stop):
    """1-D blend weights for a tile covering [start, stop) whose neighbours reach to `lo`
    (previous tile's end) and from `hi` (next tile's start): linear 0->1 across each overlap."""
    n = stop - start
    w = np.ones(n, np.float32)
    i = np.arange(n, dtype=np.float32) + 0.5
    if lo > start:
        w = np.minimum(w, i / (lo - start))
    if hi < stop:
        w = np.minimum(w, (n - i) / (stop - hi))
    return w


def _axis_neighbours(spans):
    """For each span (a, b) on an axis: (end of the previous span, start of the next span)."""
    ordered = sorted(set(spans))
    out = {}
    for j, (a, b) in enumerate(ordered):
        lo = ordered[j - 1][1] if j > 0 else a
        hi = ordered[j + 1][0] if j + 1 < len(ordered) else b
        out[(a, b)] = (lo, hi)
    return out


def _forward(backend, hwc):
    x = np.ascontiguousarray(hwc.transpose(2, 0, 1)[None], dtype=np.float32)
    return backend.forward(x)[0].transpose(1, 2, 0)


def run_plan(backend, padded, plan):
    """Forward every tile of `plan` over the padded H x W x 3 float image and blend."""
    if not plan.tiled:
        return _forward(backend, padded)
    ys = _axis_neighbours([(t[0], t[1]) for t in plan.tiles])
    xs = _axis_neighbours([(t[2], t[3]) for t in plan.tiles])
    acc = np.zeros(padded.shape, np.float32)
    wsum = np.zeros(padded.shape[:2] + (1,), np.float32)
    for y0, y1, x0, x1 in plan.tiles:
        out = _forward(backend, padded[y0:y1, x0:x1])
        w = np.outer(_ramp(*ys[(y0, y1)], y0, y1), _ramp(*xs[(x0, x1)], x0, x1))[..., None]
        acc[y0:y1, x0:x1] += w * out
        wsum[y0:y1, x0:x1] += w
    return acc / wsum


def max_tile_pixels(backend, mem_limit_mb):
    fixed, per_pixel = backend.memory_model()
    budget = mem_limit_mb * 2 ** 20 / MEM_SAFETY - fixed
    return max(0, int(budget / per_pixel))


def plan_for(backend, height, width, mem_limit_mb=None, overlap=None):
    """The tile plan for an image of height x width on `backend` under the memory limit."""
    limit = default_mem_limit_mb() if mem_limit_mb is None else mem_limit_mb
    s = backend.stride
    return plan_tiles(round_up(height, s), round_up(width, s), s,
                      max_tile_pixels(backend, limit), overlap)


def deblur_float(backend, img01, mem_limit_mb=None, overlap=None):
    """H x W x 3 float32 BGR [0,1] -> (deblurred, same size; the TilePlan used)."""
    img01 = np.asarray(img01, np.float32)
    h, w = img01.shape[:2]
    plan = plan_for(backend, h, w, mem_limit_mb, overlap)
    padded, _ = pad_to_stride(img01, backend.stride)
    return run_plan(backend, padded, plan)[:h, :w], plan


def deblur(backend, img, mem_limit_mb=None, overlap=None, ensemble=False):
    """uint8 H x W x 3 BGR -> (deblurred uint8 H x W x 3 BGR, TilePlan).

    The float output is quantised with layers.metrics.to_uint8 (clip, x255, round half up),
    the same rule the metrics apply, so a saved PNG and an in-memory evaluation agree.
    `ensemble`: the x8 self-ensemble (inference.ensemble), averaged in float before quantising;
    the plan returned is the untransformed image's.
    """
    from layers.metrics import to_uint8

    img01 = img.astype(np.float32) / np.float32(255.0)
    out, plan = deblur_float(backend, img01, mem_limit_mb, overlap)
    if ensemble:
        from .ensemble import self_ensemble

        first = [out]  # TRANSFORMS[0] is the identity: its output is this one

        def run(x):
            return first.pop() if first else deblur_float(backend, x, mem_limit_mb, overlap)[0]

        out = self_ensemble(run, img01)
    return to_uint8(out), plan
