"""What the solver needs to know about training/validation data: kind, size, and samples.

Formats (the data_prep contract): an LMDB of 6-channel uint8 Datums (blur BGR + sharp BGR,
C x H x W), HDF5 files with float32 "data"/"label" N x 3 x H x W in [0,1] BGR (a .h5 file or a
.txt list of them, as Caffe's HDF5Data wants), or, for validation only, a folder of image pairs
(`blur/` and `sharp/` subfolders with the same file names, at any depth, as in GOPRO_Large).
"""
import os
from pathlib import Path

import numpy as np

from solver.errors import MissingInputError, RunConfigError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def db_kind(path):
    """'lmdb', 'hdf5' (a .txt list or a single .h5/.hdf5 file) or 'pairs' (folder with blur/ +
    sharp/). Raises MissingInputError / RunConfigError naming the path."""
    p = Path(path)
    if not p.exists():
        raise MissingInputError(f"{path}: no such database or folder (make one with `mrfnet convert`)")
    if p.is_dir():
        if (p / "data.mdb").exists():
            return "lmdb"
        if _pair_dirs(p):
            return "pairs"
        raise RunConfigError(f"{path}: a folder that is neither an LMDB (no data.mdb) nor a folder "
                             f"of pairs (no blur/ + sharp/ subfolders)")
    if p.suffix.lower() in (".h5", ".hdf5", ".txt"):
        return "hdf5"
    raise RunConfigError(f"{path}: unknown database kind; give an LMDB folder, a .h5 file, a .txt "
                         f"list of .h5 files or a folder of blur/sharp pairs")


def hdf5_files(path):
    """The .h5 files behind an HDF5 source (the file itself, or the lines of a .txt list)."""
    p = Path(path)
    if p.suffix.lower() != ".txt":
        return [p]
    files = []
    for line in p.read_text().splitlines():
        line = line.strip()
        if line:
            f = Path(line) if os.path.isabs(line) else (p.parent / line)
            if not f.exists():
                raise MissingInputError(f"{path}: lists {line}, which does not exist")
            files.append(f)
    if not files:
        raise RunConfigError(f"{path}: the HDF5 list is empty")
    return files


def _lmdb_env(path):
    import lmdb
    return lmdb.open(str(path), readonly=True, lock=False, readahead=False, meminit=False)


def _datum(raw):
    from caffe.proto import caffe_pb2
    d = caffe_pb2.Datum()
    d.ParseFromString(raw)
    if d.channels != 6 or d.encoded:
        raise RunConfigError(f"Datum with {d.channels} channels (encoded={d.encoded}); expected a raw "
                             f"6-channel blur+sharp pair as written by `mrfnet convert`")
    arr = np.frombuffer(d.data, dtype=np.uint8).reshape(6, d.height, d.width)
    return arr


def count_entries(path):
    """Number of training samples (patches) in an LMDB or HDF5 source."""
    kind = db_kind(path)
    if kind == "lmdb":
        env = _lmdb_env(path)
        try:
            return int(env.stat()["entries"])
        finally:
            env.close()
    if kind == "hdf5":
        import h5py
        n = 0
        for f in hdf5_files(path):
            with h5py.File(f, "r") as h:
                if "data" not in h or "label" not in h:
                    raise RunConfigError(f"{f}: needs datasets 'data' and 'label'")
                n += int(h["data"].shape[0])
        return n
    return len(_pairs(Path(path)))


def sample_shape(path):
    """(H, W) of the stored training patches (LMDB/HDF5), to check the crop against."""
    kind = db_kind(path)
    if kind == "lmdb":
        env = _lmdb_env(path)
        try:
            with env.begin() as txn:
                cur = txn.cursor()
                if not cur.first():
                    raise RunConfigError(f"{path}: the LMDB is empty")
                return tuple(_datum(cur.value()).shape[1:])
        finally:
            env.close()
    if kind == "hdf5":
        import h5py
        with h5py.File(hdf5_files(path)[0], "r") as h:
            return tuple(h["data"].shape[2:])
    raise RunConfigError(f"{path}: a folder of pairs cannot be a training source; convert it with "
                         f"`mrfnet convert` first")


def _pair_dirs(root):
    return sorted(d for d in [root, *root.rglob("*")] if d.is_dir() and (d / "blur").is_dir()
                  and (d / "sharp").is_dir())


def _pairs(root):
    out = []
    for d in _pair_dirs(root):
        for f in sorted((d / "blur").iterdir()):
            if f.suffix.lower() in IMAGE_EXTS and (d / "sharp" / f.name).exists():
                out.append((d / "blur" / f.name, d / "sharp" / f.name))
    if not out:
        raise RunConfigError(f"{root}: no pairs found (blur/<name> with a matching sharp/<name>)")
    return out


def _center_crop(img, multiple, max_side):
    h, w = img.shape[:2]
    th = min(h, max_side or h) // multiple * multiple
    tw = min(w, max_side or w) // multiple * multiple
    if th < multiple or tw < multiple:
        raise RunConfigError(f"image of {w}x{h} is smaller than the net's stride {multiple}")
    y, x = (h - th) // 2, (w - tw) // 2
    return img[y:y + th, x:x + tw]


def load_pairs(path, limit=None, multiple=1, max_side=None):
    """Up to `limit` validation pairs [(blur, sharp)] as H x W x 3 uint8 BGR, centre-cropped so
    H and W are multiples of the net's total stride (and at most `max_side`)."""
    kind = db_kind(path)
    out = []
    if kind == "lmdb":
        env = _lmdb_env(path)
        try:
            with env.begin() as txn:
                for _, raw in txn.cursor():
                    a = _datum(raw).transpose(1, 2, 0)
                    out.append((np.ascontiguousarray(a[..., :3]), np.ascontiguousarray(a[..., 3:])))
                    if limit and len(out) >= limit:
                        break
        finally:
            env.close()
    elif kind == "hdf5":
        import h5py
        from layers.metrics import to_uint8
        for f in hdf5_files(path):
            with h5py.File(f, "r") as h:
                for i in range(h["data"].shape[0]):
                    out.append((to_uint8(h["data"][i].transpose(1, 2, 0)),
                                to_uint8(h["label"][i].transpose(1, 2, 0))))
                    if limit and len(out) >= limit:
                        break
            if limit and len(out) >= limit:
                break
    else:
        from data_prep.imageio import read_image
        for b, s in _pairs(Path(path))[:limit or None]:
            blur, sharp = read_image(b), read_image(s)
            if blur.shape != sharp.shape:
                raise RunConfigError(f"{b} and {s} differ in size ({blur.shape} vs {sharp.shape})")
            out.append((blur, sharp))
    if not out:
        raise RunConfigError(f"{path}: no validation samples")
    return [(_center_crop(b, multiple, max_side), _center_crop(s, multiple, max_side)) for b, s in out]
