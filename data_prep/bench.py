"""Throughput of the two writers and their disk cost per patch (for docs and `mrfnet bench`).

    mrfnet bench-data [--patches 96] [--crop 256]

Measures the writers alone (patches pre-rendered, so rendering speed and machine load from the
blur recipe do not mix in) and the full pipeline (render + write, `convert`) on the bundled photos.
"""
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from .convert import convert
from .hdf5_writer import Hdf5Writer
from .lmdb_writer import LmdbWriter
from .recipe import Recipe
from .render import RenderJob
from .sources import bundled_items


def _disk_bytes(folder):
    """(apparent bytes, allocated bytes) of all files below `folder`."""
    apparent = allocated = 0
    for p in Path(folder).rglob("*"):
        if p.is_file():
            st = p.stat()
            apparent += st.st_size
            allocated += st.st_blocks * 512
    return apparent, allocated


def _cpu():
    r = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return sum(x.ru_utime + x.ru_stime for x in r)


def measure_writers(patches=96, crop=256, seed=0):
    rng = np.random.default_rng(seed)
    pairs = [(rng.integers(0, 256, (crop, crop, 3), dtype=np.uint8),
              rng.integers(0, 256, (crop, crop, 3), dtype=np.uint8)) for _ in range(patches)]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for fmt in ("lmdb", "hdf5"):
            folder = tmp / fmt
            folder.mkdir()
            t0, c0 = time.perf_counter(), _cpu()
            if fmt == "lmdb":
                w = LmdbWriter(folder / "train_lmdb")
            else:
                w = Hdf5Writer(folder / "train_hdf5", folder / "train_hdf5.txt", folder / "train_hdf5",
                               slots=patches, crop=crop)
            for slot, (b, s) in enumerate(pairs):
                w.put(slot, b, s)
            w.close()
            seconds, cpu = time.perf_counter() - t0, _cpu() - c0
            apparent, allocated = _disk_bytes(folder)
            results[fmt] = {"patches": patches, "seconds": round(seconds, 3),
                            "patches_per_s": round(patches / seconds, 1),
                            "cpu_ms_per_patch": round(1000 * cpu / patches, 2),
                            "bytes_per_patch": round(apparent / patches),
                            "allocated_bytes_per_patch": round(allocated / patches)}
    return results


def measure_convert(crops=8, crop=256, workers=2):
    results = {}
    items = {"train": bundled_items("train"), "test": bundled_items("heldout")}
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in ("lmdb", "hdf5"):
            t0, c0 = time.perf_counter(), _cpu()
            with open(os.devnull, "w") as quiet:
                marker = convert(items, Path(tmp) / fmt, fmt=fmt,
                                 job=RenderJob(crops=crops, crop_size=crop, recipe=Recipe()),
                                 workers=workers, stream=quiet)
            seconds, cpu = time.perf_counter() - t0, _cpu() - c0
            n = sum(s["patches"] for s in marker["splits"].values())
            results[fmt] = {"patches": n, "seconds": round(seconds, 3), "patches_per_s": round(n / seconds, 1),
                            "cpu_ms_per_patch": round(1000 * cpu / n, 2), "workers": workers}
    return results


if __name__ == "__main__":  # kept for old scripts: use `mrfnet bench-data`
    import sys
    from mrfnet.cli import main
    sys.exit(main(["bench-data", *sys.argv[1:]]))
