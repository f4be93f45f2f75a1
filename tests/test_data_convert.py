"""`mrfnet convert` end to end: sources, bad inputs (each message checked), overwrite rules,
reproducibility, LMDB map growth, and a converter killed midway."""
import argparse
import csv
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import lmdb
import numpy as np
import pytest
from PIL import Image

from data_prep import outdir, sources, verify
from mrfnet.commands import convert as command
from data_prep.errors import MissingPathError, PairMismatchError
from data_prep.imageio import read_image

REPO = Path(__file__).resolve().parents[1]


def convert(*argv):
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return command.run(parser.parse_args([str(a) for a in argv]))


def lmdb_records(path):
    env = lmdb.open(str(path), readonly=True, lock=False)
    with env.begin() as txn:
        items = [(k, v) for k, v in txn.cursor()]
    env.close()
    return items


def make_pairs(root, names, size=(40, 50), seed=0):
    rng = np.random.default_rng(seed)
    (root / "blur").mkdir(parents=True, exist_ok=True)
    (root / "sharp").mkdir(parents=True, exist_ok=True)
    for n in names:
        sharp = rng.integers(0, 256, size + (3,), dtype=np.uint8)
        cv2.imwrite(str(root / "sharp" / n), sharp)
        cv2.imwrite(str(root / "blur" / n), cv2.blur(sharp, (5, 5)))
    return root / "blur", root / "sharp"


# ------------------------------------------------------------------------------ sources

def test_gopro_source_on_the_real_mini_set(gopro_mini):
    items = sources.gopro(gopro_mini, "test")
    assert [i.name for i in items] == ["flower/000001.png", "istanbul/000001.png"]
    assert all(i.blur.endswith(f"{i.name.split('/')[0]}/blur/000001.png") for i in items)
    with pytest.raises(MissingPathError, match="no 'train' folder .*found: test"):
        sources.gopro(gopro_mini, "train")
    with pytest.raises(MissingPathError, match="needs both 'blur_gamma/' and 'sharp/'"):
        sources.gopro(gopro_mini, "test", blur_kind="blur_gamma")


def test_unmatched_pair_names_are_listed(tmp_path):
    blur, sharp = make_pairs(tmp_path, ["a.png", "b.png"])
    cv2.imwrite(str(blur / "only_blur.png"), np.zeros((4, 4), np.uint8))
    cv2.imwrite(str(sharp / "only_sharp.png"), np.zeros((4, 4), np.uint8))
    with pytest.raises(PairMismatchError, match=r"without a sharp partner: only_blur\.png.*"
                                                r"without a blurred partner: only_sharp\.png"):
        sources.paired_folders(blur, sharp)


def test_sharp_folder_split_is_by_image(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(5):
        cv2.imwrite(str(folder / f"p{i}.png"), np.random.default_rng(i).integers(0, 256, (70, 90, 3), np.uint8))
    assert convert("--source", "sharp", "--images", folder, "--out", tmp_path / "db", "--crops", 2,
                   "--crop-size", 32, "--size", 64, "--test-fraction", 0.4, "--workers", 1) == 0
    with open(tmp_path / "db" / "params.csv", newline="") as f:
        table = list(csv.DictReader(f))
    by_split = {s: {r["source"] for r in table if r["split"] == s} for s in ("train", "test")}
    assert len(by_split["test"]) == 2 and len(by_split["train"]) == 3
    assert not by_split["train"] & by_split["test"]
    assert all(r["motion_len"] and r["gauss_sigma"] for r in table)   # kernel recorded per patch


# ------------------------------------------------------------------------------ bad inputs

def test_corrupt_image_stops_with_its_name(tmp_path, capsys):
    blur, sharp = make_pairs(tmp_path, ["a.png", "b.png"])
    (blur / "b.png").write_bytes(b"garbage")
    assert convert("--source", "pairs", "--blur", blur, "--sharp", sharp, "--out", tmp_path / "db",
                   "--crop-size", 16, "--workers", 1) == 2
    err = capsys.readouterr().err
    assert re.search(r"error: .*blur/b\.png: not a readable image .*--skip-bad", err)
    assert not (tmp_path / "db").exists()
    assert not list(tmp_path.glob(".db.partial-*"))   # cleaned up after a handled error


def test_pair_size_mismatch_names_both_files_or_is_skipped(tmp_path, capsys):
    blur, sharp = make_pairs(tmp_path, ["a.png", "b.png"])
    cv2.imwrite(str(blur / "b.png"), np.zeros((30, 50, 3), np.uint8))
    assert convert("--source", "pairs", "--blur", blur, "--sharp", sharp, "--out", tmp_path / "db",
                   "--crop-size", 16, "--workers", 1) == 2
    err = capsys.readouterr().err
    assert re.search(r"pair sizes differ: .*blur/b\.png is 50x30 but .*sharp/b\.png is 50x40", err)
    assert convert("--source", "pairs", "--blur", blur, "--sharp", sharp, "--out", tmp_path / "db",
                   "--crop-size", 16, "--workers", 1, "--skip-bad") == 0
    captured = capsys.readouterr()
    assert "skipped: pair sizes differ" in captured.err and "1 inputs skipped" in captured.out
    skipped = (tmp_path / "db" / "skipped.csv").read_text()
    assert "b.png" in skipped and "pair sizes differ" in skipped
    assert verify.verify(tmp_path / "db")[1]["train"]["patches"] == 4


def test_image_smaller_than_the_crop(tmp_path, capsys):
    blur, sharp = make_pairs(tmp_path, ["big.png"], size=(64, 64))
    make_pairs(tmp_path, ["small.png"], size=(20, 30))
    assert convert("--source", "pairs", "--blur", blur, "--sharp", sharp, "--out", tmp_path / "db",
                   "--crop-size", 32, "--workers", 1) == 2
    err = capsys.readouterr().err
    assert re.search(r"small\.png: image is 30x20, smaller than --crop-size 32; use a smaller "
                     r"--crop-size, or --skip-bad", err)
    assert convert("--source", "pairs", "--blur", blur, "--sharp", sharp, "--out", tmp_path / "db",
                   "--crop-size", 32, "--workers", 1, "--skip-bad") == 0
    assert "small.png" in (tmp_path / "db" / "skipped.csv").read_text()


def test_crop_larger_than_the_rendered_size_is_refused(tmp_path, capsys):
    assert convert("--out", tmp_path / "db", "--size", 64, "--crop-size", 96) == 2
    assert "--crop-size 96 is larger than the rendered image (--size 64)" in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["--source", "sharp", "--images", "/no/such/folder"], "--images /no/such/folder: no such directory"),
    (["--source", "gopro", "--root", "/no/such/gopro"], "--root /no/such/gopro: no such directory"),
    (["--source", "pairs", "--blur", "x"], "--source pairs needs --sharp"),
    (["--source", "pairs", "--root", "x", "--blur", "x", "--sharp", "y"],
     "--root applies to --source gopro, not --source pairs"),
    (["--source", "gopro", "--root", "x", "--augment", "all"], "--augment applies to synthetic blur"),
    (["--augment", "flip,wobble"], "--augment: unknown wobble"),
    (["--crops", "0"], "--crops must be >= 1"),
])
def test_wrong_paths_and_options(tmp_path, capsys, argv, message):
    assert convert(*argv, "--out", tmp_path / "db") == 2
    assert f"error: {message}" in capsys.readouterr().err
    assert not (tmp_path / "db").exists()


def test_unknown_option_is_an_argparse_error_from_the_real_command(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mrfnet.cli", "convert", "--out", str(tmp_path / "db"),
                           "--crop-szie", "64"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2 and "unrecognized arguments: --crop-szie" in proc.stderr


def test_16bit_gray_and_rgba_inputs_are_converted_and_reported(tmp_path, capsys):
    rng = np.random.default_rng(3)
    (tmp_path / "blur").mkdir()
    (tmp_path / "sharp").mkdir()
    gray16 = rng.integers(0, 65536, (24, 24), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "blur" / "a.png"), gray16)
    cv2.imwrite(str(tmp_path / "sharp" / "a.png"), (gray16 // 3).astype(np.uint16))
    rgba = rng.integers(0, 256, (24, 24, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "blur" / "b.png")
    Image.fromarray(rgba[:, :, :3]).save(tmp_path / "sharp" / "b.png")
    assert convert("--source", "pairs", "--blur", tmp_path / "blur", "--sharp", tmp_path / "sharp",
                   "--out", tmp_path / "db", "--crops", 1, "--crop-size", 24, "--workers", 1) == 0
    captured = capsys.readouterr()
    assert "converted on reading: 16-bit -> 8-bit (x255/65535, rounded) (2 files)" in captured.out
    assert "converted on reading: gray -> 3 channels (2 files)" in captured.out
    assert "converted on reading: alpha dropped (BGRA -> BGR, not composited) (1 files)" in captured.out
    from caffe.proto import caffe_pb2
    with open(tmp_path / "db" / "params.csv", newline="") as f:
        where = {r["source"]: r["location"].split(":")[1] for r in csv.DictReader(f)}
    records = dict(lmdb_records(tmp_path / "db" / "train_lmdb"))
    for name in ("a.png", "b.png"):
        d = caffe_pb2.Datum()
        d.ParseFromString(records[where[name].encode()])
        chw = np.frombuffer(d.data, np.uint8).reshape(6, 24, 24)
        np.testing.assert_array_equal(chw[:3].transpose(1, 2, 0), read_image(tmp_path / "blur" / name))
        np.testing.assert_array_equal(chw[3:].transpose(1, 2, 0), read_image(tmp_path / "sharp" / name))
    np.testing.assert_array_equal(read_image(tmp_path / "blur" / "a.png")[:, :, 1],
                                  ((gray16.astype(np.int64) * 255 + 32767) // 65535).astype(np.uint8))


@pytest.mark.parametrize("fmt", ["lmdb", "hdf5"])
def test_committed_prototxt_sources_are_what_convert_out_data_writes(tmp_path, monkeypatch, fmt):
    """models/*/train|test.prototxt name relative placeholders; `mrfnet convert --out data` run from
    the same folder must produce exactly those paths, so `caffe train` finds them."""
    from prototxt_gen.nets import SOURCES
    monkeypatch.chdir(tmp_path)
    assert convert("--out", "data", "--format", fmt, "--crops", 1, "--crop-size", 32,
                   "--size", 64, "--workers", 1) == 0
    for split in ("train", "test"):
        assert Path(SOURCES[(fmt, split)]).exists(), (SOURCES[(fmt, split)], os.listdir("data"))


# ------------------------------------------------------------------------------ output rules

def test_existing_output_needs_force(tmp_path, capsys):
    args = ["--out", tmp_path / "db", "--bundled-split", "test", "--crops", 1, "--crop-size", 32,
            "--size", 64, "--workers", 1]
    assert convert(*args) == 0
    first = (tmp_path / "db" / "params.csv").read_text()
    assert convert(*args, "--seed", 9) == 2
    assert "already exists (a finished database); choose another path, or pass --force" in capsys.readouterr().err
    assert (tmp_path / "db" / "params.csv").read_text() == first
    assert convert(*args, "--seed", 9, "--force") == 0
    assert (tmp_path / "db" / "params.csv").read_text() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db"]   # no temporary or old copy left


def test_output_is_reproducible_across_worker_counts_and_map_growth(tmp_path):
    common = ["--bundled-split", "train", "--crops", 2, "--crop-size", 128, "--seed", 7]
    assert convert(*common, "--out", tmp_path / "a", "--workers", 1) == 0
    assert convert(*common, "--out", tmp_path / "b", "--workers", 2, "--lmdb-map-mb", 1) == 0
    marker_b = outdir.read_marker(tmp_path / "b")
    assert marker_b["splits"]["train"]["map_grown"] >= 1        # 20 x 98 kB did not fit in 1 MB
    assert lmdb_records(tmp_path / "a" / "train_lmdb") == lmdb_records(tmp_path / "b" / "train_lmdb")
    assert (tmp_path / "a" / "params.csv").read_text() == (tmp_path / "b" / "params.csv").read_text()
    keys = [k for k, _ in lmdb_records(tmp_path / "a" / "train_lmdb")]
    with open(tmp_path / "a" / "params.csv", newline="") as f:
        sources_in_key_order = [r["source"] for r in csv.DictReader(f)]
    assert keys == sorted(keys) and len(keys) == 20
    assert sources_in_key_order[:2] != [sources_in_key_order[0]] * 2 or \
        len(set(sources_in_key_order[:5])) > 2                   # shuffled, not image by image


# ------------------------------------------------------------------------------ crash safety

def test_killed_converter_leaves_no_complete_looking_database_and_rerun_completes(tmp_path):
    out = tmp_path / "db"
    argv = ["convert", "--source", "bundled", "--bundled-split", "train", "--crops", "24",
            "--crop-size", "64", "--size", "128", "--workers", "2", "--out", str(out)]
    proc = subprocess.Popen([sys.executable, "-m", "mrfnet.cli", *argv], cwd=REPO, stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        seen = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            m = re.match(r"convert train: (\d+)/(\d+) patches", line)
            if m and 0 < int(m.group(1)) < int(m.group(2)):
                seen = line
                break
            if not line and proc.poll() is not None:
                break
        assert seen, "no progress line before the converter ended"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        partials = list(tmp_path.glob(".db.partial-*"))
        assert not out.exists() and len(partials) == 1
        assert not list(tmp_path.rglob(outdir.MARKER))
        assert verify.verify(out)[0] == [f"{out}: no such database folder"]
        for _ in range(50):   # the workers follow their parent (PR_SET_PDEATHSIG)
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            pytest.fail("rendering workers outlived the killed converter")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.stderr.close()
    assert convert(*argv[1:]) == 0
    assert not list(tmp_path.glob(".db.partial-*"))   # the stale partial was removed
    problems, summary = verify.verify(out)
    assert problems == [] and summary["train"]["patches"] == 240
