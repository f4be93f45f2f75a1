"""Training batches blurred on the fly: a fresh kernel for every sample, every time it is drawn.

`mrfnet train --train-images DIR` feeds the train net's Input blobs ("data", "label") from
here instead of an LMDB: each photo is resized once (the recipe's 256x256, bicubic +
antialiasing, data_prep.resize) and kept in memory; each sample is a photo from a shuffled
pass over them, a new draw of the authors' recipe (data_prep.recipe: Gaussian then linear
motion), a random crop and a random left-right mirror (as Caffe's `mirror: true`). A fixed LMDB
shows the net the same few kernels per photo again and again; here it never sees a pair twice.

`augment="dihedral"` (`mrfnet train --augment dihedral`) adds, after the mirror, a random
vertical flip and a random rotation by 0/90/180/270 degrees of the blurred and sharp crop alike:
the 8 symmetries of the square. The recipe's motion angles are multiples of 15 degrees and its
Gaussian is isotropic, so a transformed pair is a pair the recipe could have drawn (same kernel
set), but of a view of the photo it would not show otherwise (aerial tiles have no "up").
These draws come after the crop's, so with augment None the samples are exactly those of
earlier versions.

Only a window around the crop is blurred (the crop plus a margin wider than both kernels,
clipped to the photo), so a sample costs about 2 ms instead of 13 ms for the whole photo, with
pixels identical to blurring the whole photo and cropping: inside the margin no output pixel
reads past the window, and where the window meets the photo's edge the replicate border is the
photo's own. A background thread renders the next batch while Caffe runs the current step.
"""
import sys
import threading
import time

import numpy as np

from data_prep import holdout, sources
from data_prep.errors import DataPrepError
from data_prep.imageio import read_image_with_notes
from data_prep.recipe import apply_authors_blur, draw_authors_blur
from data_prep.resize import imresize
from inference.ensemble import transform
from solver.errors import RunConfigError

MARGIN = 40   # > Gaussian (5) + motion (31) kernel extents of the recipe
AUGMENTS = ("dihedral",)


def load_photos(folder, size=256, exclude=None, min_side=8, stream=sys.stderr):
    """(names, [uint8 BGR photos resized to size x size]) of the images below `folder`, minus
    the names in the list file `exclude`. Errors name the file and what to do."""
    try:
        items = holdout.filter_items(sources.sharp_folder(folder), exclude=exclude)
    except DataPrepError as exc:
        raise RunConfigError(str(exc).replace("--images", "--train-images")) from None
    names, photos = [], []
    t0 = time.monotonic()
    for i, it in enumerate(items):
        try:
            img, _ = read_image_with_notes(it.sharp)
        except DataPrepError as exc:
            raise RunConfigError(f"--train-images: {exc}") from None
        if size:
            img = imresize(img, (size, size)) if img.shape[:2] != (size, size) else img
        if min(img.shape[:2]) < min_side:
            raise RunConfigError(f"--train-images: {it.sharp} is {img.shape[1]}x{img.shape[0]}, "
                                 f"smaller than --crop {min_side}; remove it or use a smaller --crop")
        names.append(it.name)
        photos.append(np.ascontiguousarray(img))
        if stream and (i + 1) % 200 == 0:
            print(f"[train] loaded {i + 1}/{len(items)} photos ({time.monotonic() - t0:.0f} s)",
                  file=stream, flush=True)
    return names, photos


def dihedral(img, flip, quarter_turns):
    """`img` (H x W x C) flipped top-bottom when `flip`, then rotated by 90 degrees
    `quarter_turns` times (counter-clockwise, numpy's rot90): one of the eight symmetries of
    inference.ensemble.transform (a top-bottom flip is a left-right flip and a half turn)."""
    k = int(quarter_turns)
    return transform(img, (k + 2) % 4 if flip else k, flip)


def render_crop(photo, params, y, x, crop, mirror):
    """The (blurred, sharp) crop at (y, x) of `photo` blurred with `params` (recipe draw),
    computed on a window around the crop only (same pixels as blurring the whole photo)."""
    h, w = photo.shape[:2]
    y0, x0 = max(0, y - MARGIN), max(0, x - MARGIN)
    y1, x1 = min(h, y + crop + MARGIN), min(w, x + crop + MARGIN)
    blurred = apply_authors_blur(photo[y0:y1, x0:x1], params)
    win = (slice(y - y0, y - y0 + crop), slice(x - x0, x - x0 + crop))
    b, s = blurred[win], photo[y:y + crop, x:x + crop]
    if mirror:
        b, s = b[:, ::-1], s[:, ::-1]
    return b, s


class FreshBlurBatches:
    """Batches (data, label) float32 N x 3 x crop x crop in [0,1], BGR, blurred on the fly."""

    def __init__(self, photos, crop, batch, seed=0, start=0, stream=0, augment=None):
        if not photos:
            raise RunConfigError("--train-images: no photos to train on")
        if augment is not None and augment not in AUGMENTS:
            raise RunConfigError(f"--augment {augment!r}: choose one of {list(AUGMENTS)}")
        self.augment = augment
        small = [p.shape for p in photos if min(p.shape[:2]) < crop]
        if small:
            raise RunConfigError(f"--crop {crop} is larger than a training photo ({small[0][1]}x"
                                 f"{small[0][0]}); use a smaller --crop")
        self.photos, self.crop, self.batch = photos, crop, batch
        # a resumed run (start = iteration) continues with other draws than its first session;
        # each data-parallel rank (stream > 0, solver.parallel) draws from its own stream
        self.rng = np.random.default_rng([int(seed), 11, int(start)] +
                                         ([int(stream)] if stream else []))
        self.order, self.pos = self.rng.permutation(len(photos)), 0
        self._next = None
        self._thread = None

    def __len__(self):
        return len(self.photos)

    def _photo_index(self):
        if self.pos == len(self.order):
            self.order, self.pos = self.rng.permutation(len(self.photos)), 0
        self.pos += 1
        return int(self.order[self.pos - 1])

    def make_batch(self):
        n, c = self.batch, self.crop
        data = np.empty((n, 3, c, c), np.float32)
        label = np.empty((n, 3, c, c), np.float32)
        for i in range(n):
            photo = self.photos[self._photo_index()]
            params = draw_authors_blur(self.rng)
            h, w = photo.shape[:2]
            y, x = int(self.rng.integers(0, h - c + 1)), int(self.rng.integers(0, w - c + 1))
            b, s = render_crop(photo, params, y, x, c, bool(self.rng.integers(0, 2)))
            if self.augment:
                flip, turns = bool(self.rng.integers(0, 2)), int(self.rng.integers(0, 4))
                b, s = dihedral(b, flip, turns), dihedral(s, flip, turns)
            data[i] = b.transpose(2, 0, 1) / np.float32(255)
            label[i] = s.transpose(2, 0, 1) / np.float32(255)
        return data, label

    def _fill(self):
        self._next = self.make_batch()

    def next(self):
        """The next batch; the one after it is rendered in the background meanwhile."""
        if self._thread is None:
            self._fill()
        else:
            self._thread.join()
        out = self._next
        self._thread = threading.Thread(target=self._fill, daemon=True)
        self._thread.start()
        return out

    def close(self):
        if self._thread is not None:
            self._thread.join()
            self._thread = None
