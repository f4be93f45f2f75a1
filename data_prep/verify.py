"""Re-read a database folder written by `mrfnet convert` and check it (`mrfnet verify DB`).

Checks: the completeness marker; per split the patch count against the marker and params.csv;
every record's shape (6 x S x S uint8 Datum, or float32 N x 3 x S x S `data`/`label` pairs);
value ranges ([0, 1] for HDF5); that the HDF5 list file names existing files; and that blurred
and sharp differ (a patch whose blurred and sharp halves are identical is reported; more than
--max-identical of them fails). Exit 0 if all is well, 1 with the reasons otherwise, 2 on usage errors.
"""
import csv
from pathlib import Path

import numpy as np

from . import outdir


def _check_lmdb(path, crop, problems, name):
    import lmdb
    from caffe.proto import caffe_pb2
    count, identical = 0, 0
    env = lmdb.open(str(path), readonly=True, lock=False, subdir=True)
    try:
        with env.begin() as txn:
            for key, value in txn.cursor():
                datum = caffe_pb2.Datum()
                datum.ParseFromString(value)
                shape = (datum.channels, datum.height, datum.width)
                if shape != (6, crop, crop) or len(datum.data) != 6 * crop * crop:
                    problems.append(f"{name}: record {key.decode()} has shape {shape} and "
                                    f"{len(datum.data)} bytes, expected (6, {crop}, {crop})")
                    count += 1
                    continue
                arr = np.frombuffer(datum.data, dtype=np.uint8).reshape(shape)
                identical += bool(np.array_equal(arr[:3], arr[3:]))
                count += 1
    finally:
        env.close()
    return count, identical


def _check_hdf5(db, list_file, crop, problems, name):
    import h5py
    count, identical = 0, 0
    lines = [ln.strip() for ln in list_file.read_text().splitlines() if ln.strip()]
    if not lines:
        problems.append(f"{name}: list file {list_file} is empty")
    for line in lines:
        path = Path(line)
        if not path.is_absolute():
            path = Path.cwd() / path
        if not path.is_file():
            problems.append(f"{name}: list file names {line}, which does not exist "
                            "(relative paths are resolved against the current directory, as Caffe does)")
            continue
        with h5py.File(path, "r") as h5:
            if "data" not in h5 or "label" not in h5:
                problems.append(f"{path}: needs datasets 'data' and 'label'")
                continue
            data, label = h5["data"], h5["label"]
            if data.shape != label.shape or data.shape[1:] != (3, crop, crop):
                problems.append(f"{path}: data {data.shape} / label {label.shape}, "
                                f"expected N x 3 x {crop} x {crop}")
                continue
            if data.dtype != np.float32 or label.dtype != np.float32:
                problems.append(f"{path}: dtype {data.dtype}/{label.dtype}, expected float32")
            for start in range(0, data.shape[0], 64):
                d, lab = data[start:start + 64], label[start:start + 64]
                lo, hi = min(d.min(), lab.min()), max(d.max(), lab.max())
                if lo < 0 or hi > 1 or not np.isfinite(d).all() or not np.isfinite(lab).all():
                    problems.append(f"{path}: values outside [0, 1] (min {lo}, max {hi})")
                identical += int(sum(np.array_equal(a, b) for a, b in zip(d, lab)))
            count += data.shape[0]
    return count, identical


def verify(db, max_identical=0.05):
    """Return (list of problems, summary dict) for the database folder `db`."""
    db = Path(db)
    problems, summary = [], {}
    if not db.is_dir():
        return [f"{db}: no such database folder"], summary
    if not outdir.is_complete(db):
        return [f"{db}: no {outdir.MARKER}: the conversion did not finish (rerun `mrfnet convert`)"], summary
    marker = outdir.read_marker(db)
    crop = int(marker["crop_size"])
    rows = {}
    params = db / "params.csv"
    if params.is_file():
        with open(params, newline="") as f:
            for r in csv.DictReader(f):
                rows[r["split"]] = rows.get(r["split"], 0) + 1
    else:
        problems.append(f"{params}: missing")
    for split, info in marker["splits"].items():
        name = f"{db.name}/{split}"
        if marker["format"] == "lmdb":
            path = db / info["lmdb"]
            if not path.is_dir():
                problems.append(f"{name}: {path} missing")
                continue
            count, identical = _check_lmdb(path, crop, problems, name)
        else:
            list_file = db / info["list_file"]
            if not list_file.is_file():
                problems.append(f"{name}: {list_file} missing")
                continue
            count, identical = _check_hdf5(db, list_file, crop, problems, name)
        summary[split] = {"patches": count, "identical": identical}
        if count != info["patches"]:
            problems.append(f"{name}: {count} patches, but {outdir.MARKER} says {info['patches']}")
        if params.is_file() and rows.get(split, 0) != count:
            problems.append(f"{name}: params.csv has {rows.get(split, 0)} rows for {count} patches")
        if count and identical / count > max_identical:
            problems.append(f"{name}: {identical} of {count} patches have blurred == sharp "
                            f"(more than {max_identical:.0%})")
    return problems, summary
