"""Small synthetic blur/sharp LMDBs for timing runs and the solver's own tests.

Not training data: smooth random colour fields (sharp) and a Gaussian-blurred copy (blur),
written with data_prep's own Datum encoder (6 uint8 channels, blur BGR + sharp BGR), so the
generated train nets read them exactly like the output of `mrfnet convert`. Real data comes from data_prep.
"""
import os

import numpy as np


def synthetic_pair(rng, size, sigma=2.0, gain=1.0):
    """(blur, sharp) H x W x 3 uint8: a smooth random field with edges, and its blurred copy
    (times `gain`: a gain < 1 also darkens it, a degradation a net learns in a few steps)."""
    import cv2
    coarse = rng.integers(0, 256, size=(max(2, size // 8), max(2, size // 8), 3)).astype(np.uint8)
    sharp = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_NEAREST)  # hard edges
    sharp = cv2.GaussianBlur(sharp, (0, 0), 0.7)
    blur = cv2.GaussianBlur(sharp, (0, 0), sigma)
    if gain != 1.0:
        blur = np.clip(blur * float(gain) + 0.5, 0, 255).astype(np.uint8)
    return blur, sharp


def write_lmdb(path, count, size, seed=0, gain=1.0):
    """Write `count` pairs of `size` x `size` into a new LMDB at `path`; returns path."""
    import lmdb
    from data_prep.lmdb_writer import datum_bytes
    rng = np.random.default_rng(seed)
    os.makedirs(path, exist_ok=True)
    env = lmdb.open(str(path), map_size=max(1 << 24, count * size * size * 6 * 2 + (1 << 20)))
    with env.begin(write=True) as txn:
        for i in range(count):
            blur, sharp = synthetic_pair(rng, size, gain=gain)
            txn.put(f"{i:08d}".encode(), datum_bytes(blur, sharp))
    env.close()
    return path
