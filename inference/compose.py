"""Side-by-side comparison images (blurred | deblurred | sharp) for people who want to look."""
import numpy as np

from .errors import InferenceError

GAP = 8  # white pixels between panels


def side_by_side(panels, gap=GAP):
    """Concatenate uint8 H x W x 3 panels left to right with white gaps; all must share H x W."""
    shape = panels[0].shape
    for p in panels[1:]:
        if p.shape != shape:
            raise InferenceError(
                f"side-by-side panels differ in size: {shape[:2]} vs {p.shape[:2]}")
    sep = np.full((shape[0], gap, 3), 255, np.uint8)
    out = [panels[0]]
    for p in panels[1:]:
        out += [sep, p]
    return np.concatenate(out, axis=1)
