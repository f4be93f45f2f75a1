"""Reading and writing images the same way everywhere (data prep, inference, evaluation).

`read_image` always returns uint8 H x W x 3 in BGR (OpenCV/Caffe order), whatever is on disk,
and reports which conversions it made so a CLI can tell the user:

- 16-bit  -> 8-bit: v8 = round(v16 * 255 / 65535) (no exact ties exist, so no tie rule is needed);
- float   -> 8-bit: values taken as [0, 1], clipped, x255, rounded half away from zero;
- gray    -> 3 channels: the gray value copied into B, G and R;
- alpha (RGBA, gray+alpha) -> dropped: the colour channels are kept as stored, not composited
  on a background (compositing would invent content; a pair's two images get the same treatment);
- palette images are expanded to colour by OpenCV's decoder;
- EXIF orientation is ignored: pixels are used as stored (both images of a pair alike).

Missing, unreadable or corrupt files raise `ImageReadError` naming the file and what to do.
`write_image` writes to a temporary name in the target folder and renames it into place, so a
crash never leaves a half-written image under the final name.
"""
import logging
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

from .errors import DataPrepError, ImageReadError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".webp")


class ImageMissingError(ImageReadError, FileNotFoundError):
    """The image path does not exist."""


def _to_uint8(img, path, notes):
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        notes.append("16-bit -> 8-bit (x255/65535, rounded)")
        return ((img.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if img.dtype in (np.float32, np.float64):
        notes.append("float [0,1] -> 8-bit (clipped, x255, rounded)")
        return np.floor(np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    raise ImageReadError(f"{path}: unsupported pixel type {img.dtype}; "
                         "convert it to an 8- or 16-bit PNG/JPEG")


def _to_bgr3(img, path, notes):
    if img.ndim == 2:
        notes.append("gray -> 3 channels")
        return np.repeat(img[:, :, None], 3, axis=2)
    channels = img.shape[2]
    if channels == 1:
        notes.append("gray -> 3 channels")
        return np.repeat(img, 3, axis=2)
    if channels == 2:  # gray + alpha
        notes.append("gray+alpha -> 3 channels, alpha dropped")
        return np.repeat(img[:, :, :1], 3, axis=2)
    if channels == 3:
        return img
    if channels == 4:
        notes.append("alpha dropped (BGRA -> BGR, not composited)")
        return np.ascontiguousarray(img[:, :, :3])
    raise ImageReadError(f"{path}: {channels} channels are not supported; save it as RGB PNG/JPEG")


def read_image_with_notes(path):
    """Read `path` as uint8 H x W x 3 BGR; return (image, list of conversions made)."""
    path = Path(path)
    if not path.is_file():
        raise ImageMissingError(f"{path}: no such image file; check the path "
                                "(folders are matched by file name)")
    try:
        raw = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read the file ({exc.strerror}); "
                             "check its permissions") from exc
    img = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED) if raw.size else None
    if img is None or img.size == 0:
        raise ImageReadError(f"{path}: not a readable image (corrupt, truncated or unsupported "
                             "format); re-export it as PNG/JPEG or remove it (--skip-bad skips it)")
    notes = []
    img = _to_bgr3(_to_uint8(img, path, notes), path, notes)
    if notes:
        log.info("%s: %s", path, "; ".join(notes))
    return np.ascontiguousarray(img), notes


def read_image(path):
    """Read `path` as uint8 H x W x 3 BGR (conversions: see module docstring)."""
    return read_image_with_notes(path)[0]


def write_image(path, img, jpeg_quality=95):
    """Write uint8 image `img` (H x W x 3 BGR or H x W) to `path` atomically; format from the suffix."""
    path = Path(path)
    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim not in (2, 3):
        raise DataPrepError(f"write_image({path}): expected uint8 HxW or HxWx3, got {img.dtype} {img.shape}")
    ext = path.suffix.lower() or ".png"
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if ext in (".jpg", ".jpeg") else []
    try:
        ok, buf = cv2.imencode(ext, img, params)
    except cv2.error:
        ok = False
    if not ok:
        raise DataPrepError(f"write_image({path}): OpenCV cannot encode '{ext}' files; use .png or .jpg")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buf.tobytes())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
