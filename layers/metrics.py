"""PSNR and SSIM on uint8 images, computed the way deblurring papers report them.

One module for the whole project: the Caffe metric layer and the evaluation tools both import it,
so a number printed during `caffe train` and one in an evaluation table mean the same thing.

SSIM variants (see docs/layers.md for sources and the exact definitions):
- "matlab3d" (default): MATLAB Image Processing Toolbox `ssim(A, ref)` on an RGB uint8 image, i.e.
  ONE SSIM over the H x W x 3 array treated as a volume: isotropic 3-D Gaussian window,
  sigma 1.5, filter size 2*ceil(3*1.5)+1 = 11 in all three dims, 'replicate' padding,
  C1 = (0.01*255)^2, C2 = (0.03*255)^2, mean of the full-size SSIM map. 2-D input -> 2-D window.
- "skimage": skimage.metrics.structural_similarity(a, b, channel_axis=-1, gaussian_weights=True,
  sigma=1.5, use_sample_covariance=False, data_range=255): per-channel 2-D SSIM ('reflect'
  padding, 11x11 window, borders of 5 px cropped before the mean), averaged over channels.
- "basicsr": BasicSR's calculate_ssim (crop_border 0, no Y channel): per-channel 2-D SSIM with an
  11x11 Gaussian (sigma 1.5) in 'valid' mode, averaged over channels.
"""
import numpy as np
from scipy import ndimage

from layers.errors import MetricInputError

DATA_RANGE = 255.0
K1 = 0.01
K2 = 0.03
SIGMA = 1.5
SSIM_VARIANTS = ("matlab3d", "skimage", "basicsr")
DEFAULT_SSIM_VARIANT = "matlab3d"
# What a finite-valued consumer (the Caffe metric layer) reports for identical images.
PSNR_CAP_DB = 100.0


def to_uint8(x01):
    """Quantise a float image in [0, 1] to uint8 like MATLAB's im2uint8: x*255, round half up, clip.

    Deblurred outputs are judged after being saved as 8-bit images, so metrics see these values.
    """
    x = np.asarray(x01, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise MetricInputError("to_uint8: image contains NaN or inf (did training diverge?)")
    return np.clip(np.floor(x * 255.0 + 0.5), 0, 255).astype(np.uint8)


def _check_pair(a, b, name):
    a = np.asarray(a)
    b = np.asarray(b)
    if a.dtype != np.uint8 or b.dtype != np.uint8:
        raise MetricInputError(
            f"{name}: images must be uint8 (got {a.dtype} and {b.dtype}); "
            "convert float [0,1] images with layers.metrics.to_uint8 first")
    if a.shape != b.shape:
        raise MetricInputError(f"{name}: image shapes differ: {a.shape} vs {b.shape}")
    if a.ndim not in (2, 3) or a.size == 0:
        raise MetricInputError(f"{name}: expected an H x W or H x W x C image, got shape {a.shape}")
    return a, b


def mse(a, b):
    """Mean squared error over all pixels and channels of two uint8 images (float64)."""
    a, b = _check_pair(a, b, "mse")
    d = a.astype(np.float64) - b.astype(np.float64)
    return float(np.mean(d * d))


def psnr(a, b):
    """PSNR in dB of two uint8 images over all pixels/channels (MATLAB `psnr` on uint8).

    Returns float('inf') for identical images.
    """
    err = mse(a, b)
    if err == 0.0:
        return float("inf")
    return float(10.0 * np.log10(DATA_RANGE ** 2 / err))


def gaussian_kernel_1d(sigma=SIGMA, radius=None):
    """Normalised 1-D Gaussian samples exp(-x^2 / (2 sigma^2)), x = -radius..radius.

    Default radius ceil(3*sigma), MATLAB ssim's choice (5 for sigma 1.5 -> 11 taps). The product
    of these along 2 or 3 axes equals MATLAB's normalised 2-D/3-D kernel exactly (separability).
    """
    if radius is None:
        radius = int(np.ceil(3.0 * sigma))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


def _filter(x, g, axes, mode):
    for ax in axes:
        x = ndimage.correlate1d(x, g, axis=ax, mode=mode)
    return x


def _ssim_map(x, y, blur):
    """Wang et al. (2004) eq. (13) with C3 = C2/2, local statistics from the `blur` operator."""
    c1 = (K1 * DATA_RANGE) ** 2
    c2 = (K2 * DATA_RANGE) ** 2
    mux = blur(x)
    muy = blur(y)
    sxx = blur(x * x) - mux * mux
    syy = blur(y * y) - muy * muy
    sxy = blur(x * y) - mux * muy
    num = (2.0 * mux * muy + c1) * (2.0 * sxy + c2)
    den = (mux * mux + muy * muy + c1) * (sxx + syy + c2)
    return num / den


def _ssim_matlab3d(a, b):
    x = a.astype(np.float64)
    y = b.astype(np.float64)
    g = gaussian_kernel_1d(SIGMA)
    axes = tuple(range(x.ndim))  # 2-D image -> 2-D window, H x W x C -> 3-D window
    # scipy 'nearest' == MATLAB 'replicate' (also when the window is longer than the axis).
    smap = _ssim_map(x, y, lambda z: _filter(z, g, axes, "nearest"))
    return float(smap.mean())


def _channels(a):
    return [a] if a.ndim == 2 else [a[..., c] for c in range(a.shape[2])]


def _ssim_gaussian_window(a, b, variant):
    """skimage (gaussian_weights, truncate 3.5) and BasicSR (cv2.getGaussianKernel(11, 1.5), 'valid')
    both use an 11x11 Gaussian window and average the SSIM map over its interior: one computation.
    Filtering the full image and keeping the interior equals 'valid' mode exactly."""
    radius = int(3.5 * SIGMA + 0.5)  # 5: skimage's truncate 3.5 as in ndimage; BasicSR's 11 taps
    if min(a.shape[:2]) < 2 * radius + 1:
        raise MetricInputError(
            f"ssim(variant='{variant}'): image {a.shape[:2]} is smaller than the "
            f"{2 * radius + 1}x{2 * radius + 1} window")
    g = gaussian_kernel_1d(SIGMA, radius)
    vals = []
    for ca, cb in zip(_channels(a), _channels(b)):
        smap = _ssim_map(ca.astype(np.float64), cb.astype(np.float64),
                         lambda z: _filter(z, g, (0, 1), "reflect"))
        vals.append(smap[radius:-radius, radius:-radius].mean())
    return float(np.mean(vals))


_SSIM_IMPLS = {"matlab3d": _ssim_matlab3d,
               "skimage": lambda a, b: _ssim_gaussian_window(a, b, "skimage"),
               "basicsr": lambda a, b: _ssim_gaussian_window(a, b, "basicsr")}


def ssim(a, b, variant=DEFAULT_SSIM_VARIANT):
    """SSIM of two uint8 images (H x W or H x W x C, RGB order for colour), see module docstring.

    "matlab3d" is the project's reported SSIM; the other variants exist to place our numbers
    beside papers that used skimage or BasicSR.
    """
    if variant not in _SSIM_IMPLS:
        raise MetricInputError(
            f"ssim: unknown variant {variant!r}; choose one of {', '.join(SSIM_VARIANTS)}")
    a, b = _check_pair(a, b, "ssim")
    return _SSIM_IMPLS[variant](a, b)


def blob_to_images(blob, bgr=True):
    """N x C x H x W float blob in [0,1] -> list of H x W x C uint8 images in RGB order.

    Nets work in BGR (Caffe/OpenCV); metrics follow MATLAB, which reads images as RGB.
    """
    blob = np.asarray(blob)
    if blob.ndim != 4:
        raise MetricInputError(f"blob_to_images: expected N x C x H x W, got shape {blob.shape}")
    imgs = to_uint8(blob).transpose(0, 2, 3, 1)
    if bgr:
        imgs = imgs[..., ::-1]
    return [np.ascontiguousarray(im) for im in imgs]


def batch_metrics(pred_blob, target_blob, variant=DEFAULT_SSIM_VARIANT, bgr=True,
                  psnr_cap_db=PSNR_CAP_DB):
    """Batch-mean (PSNR, SSIM) of two N x C x H x W [0,1] blobs, each image quantised to uint8.

    Per-image PSNR is capped at `psnr_cap_db` before averaging, so identical images give the cap
    instead of an infinite mean (a Caffe log line cannot carry inf usefully).
    """
    preds = blob_to_images(pred_blob, bgr)
    targets = blob_to_images(target_blob, bgr)
    if len(preds) != len(targets) or preds[0].shape != targets[0].shape:
        raise MetricInputError(
            f"batch_metrics: blob shapes differ: {np.shape(pred_blob)} vs {np.shape(target_blob)}")
    p = [min(psnr(x, y), psnr_cap_db) for x, y in zip(preds, targets)]
    s = [ssim(x, y, variant) for x, y in zip(preds, targets)]
    return float(np.mean(p)), float(np.mean(s))
