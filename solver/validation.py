"""Validation while training: PSNR/SSIM (layers.metrics, on uint8 images) of the current weights
on held-out pairs, and the best model so far (best.caffemodel, best.json).

The deploy net shares the train net's parameter blobs, so it always sees the latest weights
without a copy; its forward passes are sized to the train batch's pixels, so that full-size
validation images need no more memory than training.
"""
import json
import time
from pathlib import Path

import numpy as np

import caffe

from layers import metrics
from mrfnet.caffe_memory import reuse_blob_memory
from solver.errors import RunConfigError


class Validator:
    """PSNR/SSIM of the current weights on held-out pairs, through a deploy net that shares the
    train net's parameter blobs (no copy: it always sees the latest weights)."""

    def __init__(self, samples, deploy_path, train_net, batch, max_pixels):
        self.samples = samples
        self.batch = max(1, batch)
        self.net = caffe.Net(str(deploy_path), caffe.TEST)
        missing = [n for n in self.net.params if n not in train_net.params]
        if missing:
            raise RunConfigError(f"deploy net layers {missing} have no counterpart in the train net")
        self.net.share_with(train_net)
        reuse_blob_memory(self.net)  # only predict_deblur is read: about a quarter of the memory
        groups = {}
        for blur, sharp in samples:
            groups.setdefault(blur.shape, []).append((blur, sharp))
        # at most `batch` images and about the train batch's pixels per forward pass, so
        # full-size validation images do not need more memory than training
        self.chunks = []
        for shape, g in groups.items():
            n = max(1, min(self.batch, max_pixels // (shape[0] * shape[1])))
            self.chunks += [g[i:i + n] for i in range(0, len(g), n)]
        self.input_metrics = self._score(lambda x: x)

    def _score(self, predict):
        psnr_sum = ssim_sum = 0.0
        for chunk in self.chunks:
            x = np.stack([b.transpose(2, 0, 1) for b, _ in chunk]).astype(np.float32) / 255.0
            y = np.stack([s.transpose(2, 0, 1) for _, s in chunk]).astype(np.float32) / 255.0
            p, s = metrics.batch_metrics(predict(x), y, bgr=True)
            psnr_sum += p * len(chunk)
            ssim_sum += s * len(chunk)
        n = len(self.samples)
        return psnr_sum / n, ssim_sum / n

    def _forward(self, x):
        if self.net.blobs["data"].data.shape != x.shape:
            self.net.blobs["data"].reshape(*x.shape)
            self.net.reshape()  # blob sizes known before the forward: pooled buffers fit them
        self.net.blobs["data"].data[...] = x
        self.net.forward()
        return self.net.blobs["predict_deblur"].data.copy()

    def __call__(self):
        return self._score(self._forward)


class Validation:
    """A session's validations: each one logged as a "val" record, the best model kept in the
    run directory (best.caffemodel + best.json, carried over from earlier sessions on resume)."""

    def __init__(self, validator, run_dir, log, resumed):
        self.validator = validator
        self.dir = Path(run_dir)
        self.log = log
        best_json = self.dir / "best.json"
        self.best = json.loads(best_json.read_text()) if (resumed and best_json.exists()) else None
        self.done, self.last_iter, self.seconds = False, None, 0.0

    def __call__(self, it, net):
        """Validate the weights of iteration `it` (net: the train net, saved when best)."""
        t = time.monotonic()
        psnr, ssim = self.validator()
        dt = time.monotonic() - t
        self.seconds = dt
        best = self.best is None or psnr > self.best["psnr"] or (
            psnr == self.best["psnr"] and ssim > self.best["ssim"])
        rec = {"iteration": it, "psnr": psnr, "ssim": ssim, "best": best, "seconds": dt,
               "samples": len(self.validator.samples)}
        if it == 0 or not self.done:
            rec["input_psnr"], rec["input_ssim"] = self.validator.input_metrics
        if best:
            net.save(str(self.dir / "best.caffemodel"))
            self.best = {"iteration": it, "psnr": psnr, "ssim": ssim,
                         "model": str(self.dir / "best.caffemodel")}
            (self.dir / "best.json").write_text(json.dumps(self.best, indent=1) + "\n")
        self.log.write("val", **rec)
        self.last_iter = it
        self.done = True
        return rec
