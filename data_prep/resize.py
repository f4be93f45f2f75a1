"""MATLAB-style image resizing (imresize, bicubic, antialiasing on) for uint8 images.

The authors resized their photos with MATLAB's imresize(img, [256 256]). This follows MATLAB's
documented algorithm: Keys' cubic kernel (a = -0.5); when shrinking, the kernel is stretched by
1/scale (antialiasing); output pixel x (1-based) samples input position u = x/scale + (1 - 1/scale)/2;
weights are normalised to sum 1; indices beyond the border are mirrored (symmetric); the dimension
with the smaller scale is resized first, and each pass is rounded (half away from zero) and
saturated to uint8, as MATLAB does for uint8 input. Not checked against MATLAB itself (no oracle
here; Octave's imresize has no antialiasing), so treat it as close, not bit-exact.
"""
import numpy as np

from .kernels import round_half_away


def _cubic(x):
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return ((1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)))


def contributions(in_len, out_len):
    """(weights, 0-based indices), each out_len x P: input taps of every output pixel along one axis."""
    scale = out_len / in_len
    width = 4.0
    if scale < 1:
        kernel = lambda t: scale * _cubic(scale * t)  # noqa: E731
        width = width / scale
    else:
        kernel = _cubic
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    taps = int(np.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]
    weights = kernel(u[:, None] - idx)
    weights = weights / weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
    idx = mirror[np.mod(idx.astype(np.int64) - 1, 2 * in_len)]
    keep = np.any(weights != 0, axis=0)
    return weights[:, keep], idx[:, keep]


def _resize_axis(img, out_len, axis):
    weights, idx = contributions(img.shape[axis], out_len)
    moved = np.moveaxis(img, axis, 0).astype(np.float64)
    out = np.einsum("op,op...->o...", weights, moved[idx])
    out = np.clip(round_half_away(out), 0, 255).astype(np.uint8)
    return np.moveaxis(out, 0, axis)


def imresize(img, out_hw):
    """Resize uint8 H x W (x C) `img` to out_hw = (rows, cols) like MATLAB imresize(img, out_hw)."""
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise ValueError(f"imresize: expected uint8, got {img.dtype}")
    rows, cols = int(out_hw[0]), int(out_hw[1])
    if rows < 1 or cols < 1:
        raise ValueError(f"imresize: output size must be positive, got {out_hw}")
    scales = [rows / img.shape[0], cols / img.shape[1]]
    out = img
    for axis in np.argsort(scales, kind="stable"):
        target = (rows, cols)[axis]
        if out.shape[axis] != target:
            out = _resize_axis(out, target, axis)
    return out
