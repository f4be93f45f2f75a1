"""Side-by-side comparison images (blurred | deblurred | sharp) for people who want to look.

Each panel gets a caption strip above it (what it is: blurred, the model or run that made it,
sharp; and its PSNR against the sharp image where one is known), so a picture read on its own,
away from the docs, still says which panel is which. The pixels of the panels are not touched.
`mrfnet deblur --side-by-side` (stills and video frames) and `mrfnet demo` use this one helper.
"""
import cv2
import numpy as np

from .errors import InferenceError

GAP = 8  # white pixels between panels
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def caption_height(width):
    """Height of the caption strip above a panel `width` pixels wide (14 to 40 px)."""
    return int(np.clip(width // 12, 14, 40))


def caption(name, psnr_db=None):
    """'name' or 'name  23.41 dB' (PSNR against the sharp image)."""
    return name if psnr_db is None else f"{name}  {psnr_db:.2f} dB"


def _caption_strip(text, width, height):
    """A white strip with `text` in black, as large as fits (shrunk to the width)."""
    strip = np.full((height, width, 3), 255, np.uint8)
    scale = (0.6 * height) / cv2.getTextSize("Ag", _FONT, 1.0, 1)[0][1]
    text_w = cv2.getTextSize(text, _FONT, scale, 1)[0][0]
    if text_w > width - 4:
        scale *= (width - 4) / text_w
    (tw, th), _ = cv2.getTextSize(text, _FONT, scale, 1)
    org = (max(2, (width - tw) // 2), (height + th) // 2)
    cv2.putText(strip, text, org, _FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return strip


def side_by_side(panels, captions=None, gap=GAP):
    """Concatenate uint8 H x W x 3 panels left to right with white gaps; all must share H x W.

    With `captions` (one string per panel) each panel gets a caption strip of
    caption_height(W) rows above it; the panel pixels start at that row.
    """
    shape = panels[0].shape
    for p in panels[1:]:
        if p.shape != shape:
            raise InferenceError(
                f"side-by-side panels differ in size: {shape[:2]} vs {p.shape[:2]}")
    if captions is not None:
        if len(captions) != len(panels):
            raise InferenceError(f"{len(captions)} captions for {len(panels)} panels")
        strip = caption_height(shape[1])
        panels = [np.concatenate([_caption_strip(c, shape[1], strip), p])
                  for c, p in zip(captions, panels)]
    sep = np.full((panels[0].shape[0], gap, 3), 255, np.uint8)
    out = [panels[0]]
    for p in panels[1:]:
        out += [sep, p]
    return np.concatenate(out, axis=1)
