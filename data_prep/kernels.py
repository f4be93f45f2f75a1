"""Blur kernels and MATLAB's imfilter, bit-faithful where MATLAB documents the algorithm.

The authors rendered their training pairs in MATLAB with
    fspecial('gaussian', hsize, sigma), fspecial('motion', len, theta),
    imfilter(uint8_img, psf, 'replicate', 'conv').
These functions follow MATLAB's documented algorithms step by step (same grids, same eps
thresholds, same normalisation), so the kernels agree with MATLAB to the last few ulps:

- `fspecial_gaussian`: exp(-(x^2+y^2)/(2 sigma^2)) on the grid -(n-1)/2..(n-1)/2 (half-integers
  for even n), entries below eps*max set to 0, divided by the sum.
- `fspecial_motion`: an anti-aliased line segment of length `len` at `theta` degrees
  (counter-clockwise from the x axis), one pixel wide: each pixel gets 1 - (distance to the segment),
  floored at 0, computed on one half-plane and mirrored, then normalised. Its size is always odd,
  e.g. (5, 0) -> 1x5 of 0.2, (5, 45) -> 5x5, (30, 15) -> 9x31. (GNU Octave's 'motion' differs.)
- `imfilter_replicate_conv`: convolution = correlation with the kernel rotated by 180 degrees; the
  rotated kernel's origin is floor((size+1)/2) (1-based), so for even sizes the origin sits above/left
  of the middle, as in MATLAB; border pixels replicated; output the input's size; computed in float64,
  rounded half away from zero and saturated to uint8 (MATLAB's double -> uint8 cast). Pixels within
  rounding noise of a .5 tie are summed in a fixed order (see the function), matching GNU Octave.

Plus camera-shake kernels (Boracchi & Foi 2012, "Modeling the performance of image restoration
from motion blur"): a random walk with inertia, a centripetal pull, Gaussian jitter and rare abrupt
turns, sampled onto the pixel grid with bilinear weights.
"""
import math

import numpy as np

EPS = np.finfo(np.float64).eps  # MATLAB's eps


def _matlab_sum(a):
    """Sum in MATLAB's column-major order, one addition at a time (tiny arrays only)."""
    total = 0.0
    for v in np.asarray(a, dtype=np.float64).ravel(order="F"):
        total += float(v)
    return total


def fspecial_gaussian(hsize=3, sigma=0.5):
    """MATLAB fspecial('gaussian', hsize, sigma): float64 array of shape hsize (int or (rows, cols))."""
    rows, cols = (hsize, hsize) if np.isscalar(hsize) else tuple(hsize)
    if int(rows) != rows or int(cols) != cols or rows < 1 or cols < 1:
        raise ValueError(f"fspecial_gaussian: hsize must be positive integers, got {hsize!r}")
    if not sigma > 0:
        raise ValueError(f"fspecial_gaussian: sigma must be > 0, got {sigma!r}")
    y = np.arange(int(rows), dtype=np.float64) - (rows - 1) / 2.0
    x = np.arange(int(cols), dtype=np.float64) - (cols - 1) / 2.0
    xx, yy = np.meshgrid(x, y)
    h = np.exp(-(xx * xx + yy * yy) / (2.0 * sigma * sigma))
    h[h < EPS * h.max()] = 0.0
    total = _matlab_sum(h)
    return h / total if total != 0 else h


def _matlab_colon(start, step, stop):
    """MATLAB start:step:stop for integer-valued arguments (empty when it runs the wrong way)."""
    if step == 0 or (step > 0 and start > stop) or (step < 0 and start < stop):
        return np.zeros(0)
    return np.arange(start, stop + step, step, dtype=np.float64)[: int(abs(stop - start) // abs(step)) + 1]


def fspecial_motion(length=9, theta=0.0):
    """MATLAB fspecial('motion', len, theta): a normalised anti-aliased line kernel (odd size)."""
    if not np.isfinite(length) or not np.isfinite(theta):
        raise ValueError(f"fspecial_motion: len and theta must be finite, got {length!r}, {theta!r}")
    length = max(1.0, float(length))
    half = (length - 1.0) / 2.0
    phi = math.fmod(float(theta), 180.0)
    if phi < 0:
        phi += 180.0  # MATLAB mod(): result takes the divisor's sign
    phi = phi / 180.0 * math.pi
    cosphi, sinphi = math.cos(phi), math.sin(phi)
    xsign = float(np.sign(cosphi))
    linewdt = 1.0
    # half of the kernel: x from 0 towards the line's direction, y >= 0
    sx = math.trunc(half * cosphi + linewdt * xsign - length * EPS)
    sy = math.trunc(half * sinphi + linewdt - length * EPS)
    x, y = np.meshgrid(_matlab_colon(0, xsign, sx), np.arange(0, sy + 1, dtype=np.float64))
    dist = y * cosphi - x * sinphi                  # signed distance across the line
    rad = np.sqrt(x * x + y * y)
    beyond = (rad >= half) & (np.abs(dist) <= linewdt)  # past the end point, within the width
    along = half - np.abs((x[beyond] + dist[beyond] * sinphi) / cosphi)
    dist[beyond] = np.sqrt(dist[beyond] ** 2 + along ** 2)
    dist = linewdt + EPS - np.abs(dist)
    dist[dist < 0] = 0.0
    ny, nx = dist.shape
    h = np.zeros((2 * ny - 1, 2 * nx - 1))
    h[:ny, :nx] = dist[::-1, ::-1]                  # rot90(dist, 2)
    h[ny - 1:, nx - 1:] = dist
    h = h / (_matlab_sum(h) + EPS * length * length)
    if cosphi > 0:
        h = h[::-1, :]
    return np.ascontiguousarray(h)


def round_half_away(x):
    """Round to nearest integer, halves away from zero (MATLAB's round and double->int cast)."""
    a = np.abs(x)
    r = np.floor(a)
    r += (a - r) >= 0.5
    return np.copysign(r, x)


def _near_tie_fma(src, kernel, where, shape):
    """Recompute the pixels `where` (flat indices) as BLAS daxpy would: fused multiply-adds over the
    kernel's taps in MATLAB column-major order (the order of GNU Octave's conv2); long double
    holds each product exactly, so only the addition is rounded (as in an FMA)."""
    h, w = shape[:2]
    idx = np.unravel_index(where, shape)
    y, x = idx[0], idx[1]
    ch = idx[2] if len(shape) == 3 else None
    kh, kw = kernel.shape
    acc = np.zeros(len(where))
    for j in range(kw):
        for i in range(kh):
            if kernel[i, j] == 0:
                continue
            a, b = kh - 1 - i, kw - 1 - j  # the tap's position in the rotated kernel
            vals = src[y + a, x + b] if ch is None else src[y + a, x + b, ch]
            acc = (np.longdouble(kernel[i, j]) * vals.astype(np.longdouble) + acc).astype(np.float64)
    return acc


def imfilter_replicate_conv(img, kernel):
    """MATLAB imfilter(img, kernel, 'replicate', 'conv') for a uint8 image (H x W or H x W x C).

    Summation order matters only where the exact value is within rounding noise of a .5 tie
    (common with even-sized symmetric kernels on step edges). There the pixel is recomputed in a
    fixed order (fused multiply-adds, kernel column-major), which reproduces GNU Octave's imfilter
    bit for bit; MATLAB does not document its order, so it may differ by one level at such pixels.
    """
    img = np.asarray(img)
    kernel = np.asarray(kernel, dtype=np.float64)
    if img.dtype != np.uint8:
        raise ValueError(f"imfilter_replicate_conv: expected a uint8 image, got {img.dtype}")
    if kernel.ndim != 2 or kernel.size == 0:
        raise ValueError(f"imfilter_replicate_conv: expected a non-empty 2-D kernel, got {kernel.shape}")
    if img.ndim not in (2, 3):
        raise ValueError(f"imfilter_replicate_conv: expected H x W or H x W x C, got {img.shape}")
    rot = kernel[::-1, ::-1]
    kh, kw = rot.shape
    cy, cx = (kh + 1) // 2 - 1, (kw + 1) // 2 - 1  # origin of the rotated kernel, 0-based
    pad = [(cy, kh - 1 - cy), (cx, kw - 1 - cx)] + [(0, 0)] * (img.ndim - 2)
    src = np.pad(img, pad, mode="edge")
    srcf = src.astype(np.float64)
    h, w = img.shape[:2]
    out = np.zeros(img.shape, dtype=np.float64)
    for a, b in zip(*np.nonzero(rot)):  # MATLAB also skips zero taps
        out += rot[a, b] * srcf[a:a + h, b:b + w]
    frac = np.abs(out) - np.floor(np.abs(out))
    near = np.flatnonzero(np.abs(frac - 0.5) < 1e-9)
    if near.size:
        out.ravel()[near] = _near_tie_fma(src, kernel, near, img.shape)
    return np.clip(round_half_away(out), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- camera shake (Boracchi & Foi)

def random_trajectory(rng, length=29.0, num_steps=2000, anxiety=None):
    """A random camera-shake path: complex positions (x + iy) of `num_steps` points, total length `length`.

    Each step has the same length; the velocity drifts with Gaussian jitter scaled by `anxiety`
    (default uniform in [0, 0.1)), is pulled back towards the start (centripetal term) and
    occasionally turns abruptly (big shakes), as in Boracchi & Foi's model.
    """
    centripetal = 0.7 * rng.random()
    gaussian_term = 10.0 * rng.random()
    freq_big_shakes = 0.2 * rng.random()
    if anxiety is None:
        anxiety = 0.1 * rng.random()
    step = length / (num_steps - 1)
    angle = 2 * math.pi * rng.random()
    v = complex(math.cos(angle), math.sin(angle)) * (anxiety if anxiety > 0 else step)
    pos = np.zeros(num_steps, dtype=np.complex128)
    jitter = rng.standard_normal((num_steps - 1, 2))
    shake_draws = rng.random((num_steps - 1, 2))
    for t in range(num_steps - 1):
        turn = 0j
        if shake_draws[t, 0] < freq_big_shakes * anxiety:
            turn = 2 * v * complex(math.cos(math.pi + shake_draws[t, 1] - 0.5),
                                   math.sin(math.pi + shake_draws[t, 1] - 0.5))
        dv = turn + anxiety * (gaussian_term * complex(jitter[t, 0], jitter[t, 1])
                               - centripetal * pos[t]) * step
        v = v + dv
        v = v / abs(v) * step if abs(v) > 0 else complex(step, 0)
        pos[t + 1] = pos[t] + v
    return pos


def trajectory_psf(path, size=31, exposure=1.0):
    """Sample the first `exposure` fraction of `path` onto a size x size grid (bilinear), normalised.

    The path's bounding box is centred on the grid; samples falling outside are dropped.
    """
    if size < 1 or size % 2 == 0:
        raise ValueError(f"trajectory_psf: size must be a positive odd number, got {size}")
    n = max(1, int(round(len(path) * float(exposure))))
    pts = path[:n]
    centre = (pts.real.max() + pts.real.min()) / 2 + 1j * (pts.imag.max() + pts.imag.min()) / 2
    pts = pts - centre + (size - 1) / 2 * (1 + 1j)
    x, y = pts.real, pts.imag
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    psf = np.zeros((size + 1, size + 1))
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            yy, xx = y0 + dy, x0 + dx
            ok = (yy >= 0) & (yy < size) & (xx >= 0) & (xx < size)
            np.add.at(psf, (yy[ok], xx[ok]), (wy * wx)[ok])
    psf = psf[:size, :size]
    total = psf.sum()
    if total <= 0:
        psf[size // 2, size // 2] = 1.0
        total = 1.0
    return psf / total


def random_shake_kernel(rng, size=31, length=None, exposure=1.0):
    """A Boracchi-Foi camera-shake PSF (size x size, odd) and its parameters (for params.csv).

    anxiety ~ U[0.001, 0.01]: with Boracchi and Foi's own default (0.1 x U[0, 1]) a path of this
    length coils up into 2-5 pixels; this smaller range (the one DeblurGAN used later) gives
    shake paths spanning roughly 7-17 pixels, comparable to the motion kernels of the recipe.
    """
    length = float(size - 2) if length is None else float(length)
    anxiety = float(rng.uniform(0.001, 0.01))
    path = random_trajectory(rng, length=length, anxiety=anxiety)
    psf = trajectory_psf(path, size=size, exposure=exposure)
    return psf, {"shake_size": size, "shake_length": length, "shake_anxiety": anxiety,
                 "shake_exposure": exposure}
