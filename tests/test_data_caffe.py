"""Where the data meets Caffe: real Data (LMDB) and HDF5Data layers read back exactly the pixels the
converter cut from the source images, and `mrfnet verify` checks the databases."""
import argparse
import csv
import shutil
from pathlib import Path

import caffe
import h5py
import numpy as np
import pytest
from caffe import layers as L, params as P

from data_prep import verify
from mrfnet.commands import convert as command
from data_prep.imageio import read_image

CROP = 48


def convert(*argv):
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return command.run(parser.parse_args([str(a) for a in argv]))


def rows(db):
    with open(Path(db) / "params.csv", newline="") as f:
        return list(csv.DictReader(f))


def source_patches(gopro_root, row):
    seq, frame = row["source"].split("/")
    y, x = int(row["crop_y"]), int(row["crop_x"])
    win = (slice(y, y + CROP), slice(x, x + CROP))
    blur = read_image(gopro_root / "test" / seq / "blur" / frame)[win]
    sharp = read_image(gopro_root / "test" / seq / "sharp" / frame)[win]
    return blur, sharp


def net_file(tmp_path, spec):
    path = tmp_path / "net.prototxt"
    path.write_text(str(spec.to_proto()))
    return str(path)


@pytest.fixture(scope="module")
def gopro_dbs(gopro_mini, tmp_path_factory):
    base = tmp_path_factory.mktemp("dbs")
    out = {}
    for fmt in ("lmdb", "hdf5"):
        db = base / fmt
        assert convert("--source", "gopro", "--root", gopro_mini, "--split", "test", "--format", fmt,
                       "--out", db, "--crops", 3, "--crop-size", CROP, "--seed", 4, "--workers", 1) == 0
        out[fmt] = db
    return out


def test_caffe_data_layer_and_slice_give_the_source_pixels(gopro_dbs, gopro_mini, tmp_path):
    db = gopro_dbs["lmdb"]
    table = sorted(rows(db), key=lambda r: int(r["slot"]))
    assert len(table) == 6 and {r["source"] for r in table} == {"flower/000001.png", "istanbul/000001.png"}
    n = caffe.NetSpec()
    n.pair, n.unused = L.Data(source=str(db / "test_lmdb"), backend=P.Data.LMDB, batch_size=len(table),
                              transform_param=dict(scale=1.0 / 255), ntop=2)
    n.data, n.label = L.Slice(n.pair, slice_param=dict(axis=1, slice_point=3), ntop=2)
    net = caffe.Net(net_file(tmp_path, n), caffe.TEST)
    net.forward()
    assert net.blobs["data"].data.shape == (6, 3, CROP, CROP)
    for i, row in enumerate(table):  # Caffe reads keys in order: slot 0, 1, ...
        blur, sharp = source_patches(gopro_mini, row)
        got_blur = np.rint(net.blobs["data"].data[i] * 255).astype(np.uint8).transpose(1, 2, 0)
        got_sharp = np.rint(net.blobs["label"].data[i] * 255).astype(np.uint8).transpose(1, 2, 0)
        np.testing.assert_array_equal(got_blur, blur)
        np.testing.assert_array_equal(got_sharp, sharp)
        assert not np.array_equal(blur, sharp)


def test_caffe_data_layer_crop_cuts_blur_and_sharp_alike(gopro_dbs, gopro_mini, tmp_path):
    # a TEST-phase crop is centred: both halves of the 6-channel Datum get the same window
    db, c = gopro_dbs["lmdb"], 32
    table = sorted(rows(db), key=lambda r: int(r["slot"]))
    n = caffe.NetSpec()
    n.pair, n.unused = L.Data(source=str(db / "test_lmdb"), backend=P.Data.LMDB, batch_size=2,
                              transform_param=dict(scale=1.0 / 255, crop_size=c), ntop=2)
    n.data, n.label = L.Slice(n.pair, slice_param=dict(axis=1, slice_point=3), ntop=2)
    net = caffe.Net(net_file(tmp_path, n), caffe.TEST)
    net.forward()
    off = (CROP - c) // 2
    for i in range(2):
        blur, sharp = source_patches(gopro_mini, table[i])
        win = (slice(off, off + c), slice(off, off + c))
        np.testing.assert_array_equal(np.rint(net.blobs["data"].data[i] * 255).transpose(1, 2, 0), blur[win])
        np.testing.assert_array_equal(np.rint(net.blobs["label"].data[i] * 255).transpose(1, 2, 0), sharp[win])


def test_caffe_hdf5data_layer_gives_the_source_pixels(gopro_dbs, gopro_mini, tmp_path):
    db = gopro_dbs["hdf5"]
    table = rows(db)
    list_file = db / "test_hdf5.txt"
    entries = list_file.read_text().split()
    assert entries and all(Path(e).is_absolute() and Path(e).is_file() for e in entries)
    n = caffe.NetSpec()
    n.data, n.label = L.HDF5Data(source=str(list_file), batch_size=len(table), ntop=2)
    net = caffe.Net(net_file(tmp_path, n), caffe.TEST)
    net.forward()
    by_location = {r["location"]: r for r in table}
    for i in range(len(table)):   # one file here: rows in file order
        row = by_location[f"test_hdf5/part-00000.h5:{i}"]
        blur, sharp = source_patches(gopro_mini, row)
        want_blur = blur.transpose(2, 0, 1).astype(np.float32) / np.float32(255)
        np.testing.assert_array_equal(net.blobs["data"].data[i], want_blur)
        np.testing.assert_array_equal(net.blobs["label"].data[i],
                                      sharp.transpose(2, 0, 1).astype(np.float32) / np.float32(255))


def test_hdf5_files_are_bounded_and_listed(gopro_mini, tmp_path):
    db = tmp_path / "h5"
    # a patch is 2 x 3 x 48 x 48 float32 = 55296 bytes; 0.12 MB (125829 bytes) holds 2: 6 -> 3 files
    assert convert("--source", "gopro", "--root", gopro_mini, "--split", "test", "--format", "hdf5",
                   "--out", db, "--crops", 3, "--crop-size", CROP, "--h5-file-mb", 0.12,
                   "--workers", 1) == 0
    files = (db / "test_hdf5.txt").read_text().split()
    assert len(files) == 3
    sizes = [h5py.File(f, "r")["data"].shape[0] for f in files]
    assert sizes == [2, 2, 2]
    assert verify.verify(db)[0] == []


def test_verify_passes_good_databases_and_names_problems(gopro_dbs, tmp_path):
    for db in gopro_dbs.values():
        problems, summary = verify.verify(db)
        assert problems == [] and summary["test"]["patches"] == 6
    # a database whose params.csv lost a row, and one without its marker
    bad = tmp_path / "bad"
    shutil.copytree(gopro_dbs["lmdb"], bad)
    lines = (bad / "params.csv").read_text().splitlines()
    (bad / "params.csv").write_text("\n".join(lines[:-1]) + "\n")
    problems, _ = verify.verify(bad)
    assert any("params.csv has 5 rows for 6 patches" in p for p in problems)
    (bad / "COMPLETE.json").unlink()
    problems, _ = verify.verify(bad)
    assert problems and "did not finish" in problems[0]


def test_verify_detects_identical_blur_and_sharp(tmp_path):
    from data_prep.lmdb_writer import LmdbWriter
    from data_prep import outdir
    tmp = outdir.begin(tmp_path / "same")
    w = LmdbWriter(tmp / "train_lmdb")
    img = np.full((8, 8, 3), 9, np.uint8)
    for slot in range(4):
        w.put(slot, img, img)
    w.close()
    (tmp / "params.csv").write_text("split,slot\n" + "".join(f"train,{i}\n" for i in range(4)))
    outdir.finish(tmp, tmp_path / "same", {"format": "lmdb", "crop_size": 8,
                                           "splits": {"train": {"patches": 4, "lmdb": "train_lmdb"}}})
    problems, summary = verify.verify(tmp_path / "same")
    assert summary["train"]["identical"] == 4
    assert any("4 of 4 patches have blurred == sharp" in p for p in problems)
