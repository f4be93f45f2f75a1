"""Render items into an LMDB or HDF5 database folder (the work behind `mrfnet convert`).

Output folder layout (one folder per database, published atomically, see outdir.py):
    OUT/train_lmdb/, OUT/test_lmdb/          LMDB of 6-channel uint8 Datums   (--format lmdb)
    OUT/train_hdf5/part-*.h5, OUT/train_hdf5.txt  HDF5 files + HDF5Data list   (--format hdf5)
    OUT/params.csv                            one row per patch: where it is, its source, its crop,
                                              every random parameter that made it
    OUT/skipped.csv                           inputs skipped with --skip-bad, and why
    OUT/COMPLETE.json                         counts, shapes, options; written last
Items are rendered by a pool of worker processes (results kept in item order, so the output is
identical for any number of workers).
"""
import csv
import ctypes
import functools
import multiprocessing
import signal
import sys
import time
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from . import outdir
from .errors import DataPrepError
from .hdf5_writer import Hdf5Writer
from .lmdb_writer import LmdbWriter
from mrfnet.progress import ProgressBar
from .render import RenderJob, render_item

FORMATS = ("lmdb", "hdf5")
FIRST_COLUMNS = ["split", "slot", "location", "source", "item", "sample", "crop_y", "crop_x",
                 "crop_size", "source_size"]
SPLIT_IDS = {"train": 0, "test": 1}


def _worker_init():
    """Workers die with the converter (even on SIGKILL) and leave Ctrl-C to it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _work(job, indexed_item):
    index, item = indexed_item
    return render_item(job, index, item)


def _write_csv(path, rows):
    extra = sorted({k for r in rows for k in r} - set(FIRST_COLUMNS))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIRST_COLUMNS + extra, restval="")
        w.writeheader()
        for r in rows:
            w.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in r.items()})


def _make_writer(fmt, tmp, out, split, slots, job, opts):
    if fmt == "lmdb":
        return LmdbWriter(tmp / f"{split}_lmdb", map_size=opts.get("lmdb_map_size", 1 << 26))
    final = Path(out).resolve() / f"{split}_hdf5"
    return Hdf5Writer(tmp / f"{split}_hdf5", tmp / f"{split}_hdf5.txt", final, slots=slots,
                      crop=job.crop_size, max_mb=opts.get("h5_file_mb", 256),
                      relative_to=opts.get("h5_relative_to"), compression=opts.get("h5_compression"))


def convert(splits, out, fmt="lmdb", job=RenderJob(), workers=2, force=False, stream=None,
            source=None, **opts):
    """Render {split: [Item]} into the database folder `out`; return the marker dict.

    opts: lmdb_map_size (bytes), h5_file_mb, h5_relative_to (folder or None), h5_compression.
    """
    stream = stream if stream is not None else sys.stderr
    if fmt not in FORMATS:
        raise DataPrepError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    out = Path(out)
    tmp = outdir.begin(out, force)
    pool = None
    try:
        if workers > 1:
            pool = multiprocessing.get_context("fork").Pool(workers, initializer=_worker_init)
        imap = pool.imap if pool else map
        rows, skipped, notes = [], [], Counter()
        marker = {"format": fmt, "splits": {}, "crop_size": job.crop_size, "crops_per_image": job.crops,
                  "seed": job.seed, "recipe": asdict(job.recipe), "source": source or {},
                  "channels": "blurred B,G,R then sharp B,G,R" if fmt == "lmdb"
                  else "data = blurred B,G,R; label = sharp B,G,R; float32 in [0,1]"}
        started = time.monotonic()
        for split, items in splits.items():
            if not items:
                continue
            slots = len(items) * job.crops
            split_job = replace(job, split_id=SPLIT_IDS.get(split, 2))
            perm = np.random.default_rng([int(job.seed), 11, split_job.split_id]).permutation(slots)
            writer = _make_writer(fmt, tmp, out, split, slots, job, opts)
            progress = ProgressBar(slots, label=f"convert {split}", unit="patches", stream=stream,
                                   min_interval_pipe=1.0)
            split_rows, first_notes = [], []
            for res in imap(functools.partial(_work, split_job), enumerate(items)):
                for note in res.notes:
                    notes[note.split(": ", 1)[-1]] += 1
                    if len(first_notes) < 5:
                        first_notes.append(note)
                        stream.write(f"note: {note}\n")
                if res.skipped:
                    skipped.append({"split": split, "source": res.name, "reason": res.skipped})
                    stream.write(f"skipped: {res.skipped}\n")
                    progress.total -= job.crops
                for s, blurred, sharp, params in res.patches:
                    slot = int(perm[res.index * job.crops + s])
                    loc = writer.put(slot, blurred, sharp)
                    split_rows.append({"split": split, "slot": slot, "location": loc, "source": res.name,
                                       "item": res.index, "sample": s, "crop_size": job.crop_size, **params})
                    progress.update(progress.count + 1)
            info = writer.close()
            if fmt == "hdf5":
                info, where = info
                for r in split_rows:
                    r["location"] = where[r["slot"]]
                info["list_file"] = f"{split}_hdf5.txt"
            else:
                for r in split_rows:
                    r["location"] = f"{split}_lmdb:{r['location']}"
                info["lmdb"] = f"{split}_lmdb"
            progress.close(summary=True)
            if info["patches"] == 0:
                raise DataPrepError(f"split '{split}': every input was skipped (see the messages "
                                    "above); nothing to write")
            info["items"] = len(items)
            info["skipped_items"] = sum(1 for s in skipped if s["split"] == split)
            marker["splits"][split] = info
            rows.extend(sorted(split_rows, key=lambda r: r["slot"]))
        if not marker["splits"]:
            raise DataPrepError("no input images: nothing to convert")
        _write_csv(tmp / "params.csv", rows)
        if skipped:
            with open(tmp / "skipped.csv", "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=["split", "source", "reason"])
                w.writeheader()
                w.writerows(skipped)
        marker["conversions"] = dict(notes)
        marker["skipped"] = len(skipped)
        marker["seconds"] = round(time.monotonic() - started, 3)
        outdir.finish(tmp, out, marker)
        return marker
    except BaseException:
        if pool is not None:
            pool.terminate()
            pool = None
        outdir.abort(tmp)
        raise
    finally:
        if pool is not None:
            pool.close()
            pool.join()
