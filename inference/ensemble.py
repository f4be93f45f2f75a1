"""x8 self-ensemble: deblur the image under the eight flips and 90-degree rotations of the
square's symmetry group, turn each output back and average them.

Why these eight: the recipe's motion blur angles are multiples of 15 degrees and its Gaussian
is isotropic, so a flipped or quarter-turned blurred image is still a sample of the training
distribution, and the eight outputs make errors that partly cancel. The cost is eight
forwards (each through the same padding and tiling as a plain one).
"""
import numpy as np

# (quarter turns counter-clockwise, flip left-right first): the dihedral group of the square
TRANSFORMS = tuple((k, flip) for flip in (False, True) for k in range(4))


def transform(img, k, flip):
    """H x W x C -> the image flipped left-right (if `flip`), then turned k quarter turns."""
    return np.rot90(img[:, ::-1] if flip else img, k)


def untransform(img, k, flip):
    """The inverse of transform(., k, flip)."""
    back = np.rot90(img, -k)
    return back[:, ::-1] if flip else back


def self_ensemble(run, img):
    """The mean of untransform(run(transform(img))) over TRANSFORMS; `run` maps an H x W x 3
    float image to its deblurred float image of the same size."""
    acc = np.zeros(img.shape, np.float64)
    for k, flip in TRANSFORMS:
        acc += untransform(run(np.ascontiguousarray(transform(img, k, flip))), k, flip)
    return (acc / len(TRANSFORMS)).astype(np.float32)
