"""`mrfnet deblur` end to end on real Caffe: mixed inputs (odd sizes, gray, RGBA, 16-bit, JPEG,
folders, globs), bad inputs reported while the rest is processed, JPEG and side-by-side output."""
import argparse
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from mrfnet.commands import deblur as command
from inference.compose import caption, caption_height, side_by_side
from test_inference_fixtures import make_model

REPO = Path(__file__).resolve().parents[1]


def deblur(argv):
    p = argparse.ArgumentParser()
    command.add_arguments(p)
    return command.run(p.parse_args([str(a) for a in argv]))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("models"))


@pytest.fixture
def images(tmp_path):
    """Odd sizes and every conversion; written with PIL/numpy so no code under test is used."""
    rng = np.random.default_rng(5)
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    shapes = {}

    def save(name, arr, mode=None):
        Image.fromarray(arr, mode).save(d / name)
        shapes[name] = arr.shape[:2]

    save("odd.png", rng.integers(0, 256, (37, 53, 3), dtype=np.uint8))
    save("gray.png", rng.integers(0, 256, (30, 41), dtype=np.uint8))
    save("rgba.png", rng.integers(0, 256, (29, 33, 4), dtype=np.uint8))
    save("photo.jpg", rng.integers(0, 256, (25, 31, 3), dtype=np.uint8))
    cv2.imwrite(str(d / "deep16.png"), rng.integers(0, 65536, (31, 35, 3), dtype=np.uint16))
    shapes["deep16.png"] = (31, 35)
    save("sub/deeper.png", rng.integers(0, 256, (19, 23, 3), dtype=np.uint8))
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return d, shapes


def _shape(path):
    return np.asarray(Image.open(path)).shape[:2]


def test_every_kind_of_input_keeps_its_size_and_bad_ones_are_listed(tmp_path, model, images,
                                                                   capsys):
    d, shapes = images
    out = tmp_path / "out"
    rc = deblur([d, str(d / "sub" / "*.png"), tmp_path / "missing.png", "--out", out,
                 "--deploy", model[0], "--weights", model[1]])
    err = capsys.readouterr().err
    assert rc == 1
    for name, hw in shapes.items():
        written = out / (Path(name).stem + ".png")
        assert written.is_file(), name
        assert _shape(written) == hw, name
        assert np.asarray(Image.open(written)).ndim == 3  # 8-bit RGB out, whatever came in
    assert not (out / "broken.png").exists()
    failures = err[err.index("failure(s):"):]
    assert "broken.png" in failures and "missing.png" in failures
    assert "odd.png" not in failures
    for note in ("gray -> 3 channels", "alpha dropped", "16-bit -> 8-bit"):
        assert note in err
    assert "6 of 7 image(s) written" in err


def test_jpeg_and_side_by_side_with_sharp(tmp_path, model):
    rng = np.random.default_rng(6)
    blur, sharp = tmp_path / "blur", tmp_path / "sharp"
    blur.mkdir(), sharp.mkdir()
    for name, (h, w) in {"a.png": (21, 27), "b.png": (24, 18)}.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(blur / name)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(sharp / name)
    out = tmp_path / "out"
    assert deblur([blur, "--out", out, "--deploy", model[0], "--weights", model[1], "--jpeg",
                   "--side-by-side", "--sharp", sharp]) == 0
    assert sorted(p.name for p in out.glob("*.jpg")) == ["a.jpg", "b.jpg"]
    assert _shape(out / "a.jpg") == (21, 27)
    sbs = np.asarray(Image.open(out / "side_by_side" / "a.png"))
    cap = caption_height(27)
    assert sbs.shape[:2] == (cap + 21, 3 * 27 + 2 * 8)
    assert np.array_equal(sbs[cap:, :27], np.asarray(Image.open(blur / "a.png")))
    assert np.array_equal(sbs[cap:, -27:], np.asarray(Image.open(sharp / "a.png")))
    strips = [sbs[:cap, x:x + 27] for x in (0, 35, 70)]
    assert all(s.min() < 128 for s in strips)  # every panel has a caption
    assert len({s.tobytes() for s in strips}) == 3


def test_captions_name_the_panel_and_its_psnr():
    assert caption("blurred", 23.414) == "blurred  23.41 dB" and caption("sharp") == "sharp"
    assert command.model_label("models/mrfnet/mrfnet.caffemodel") == "mrfnet"
    assert command.model_label("runs/aerial/best.caffemodel", ensemble=True) == "aerial/best x8"
    a = np.zeros((30, 200, 3), np.uint8)
    one, two = (side_by_side([a, a], [c, "x"]) for c in ("blurred  20.00 dB", "blurred  21.00 dB"))
    assert one.shape == (30 + caption_height(200), 408, 3) and not np.array_equal(one, two)


def test_model_problems_stop_before_any_image_with_exit_2(tmp_path, model, images, capsys):
    d, _ = images
    out = tmp_path / "out"
    assert deblur([d, "--out", out, "--deploy", model[0],
                   "--weights", tmp_path / "none.caffemodel"]) == 2
    assert "weights not found" in capsys.readouterr().err
    deploy3, _ = make_model(model[0].parent, paths=3)
    assert deblur([d, "--out", out, "--deploy", deploy3, "--weights", model[1]]) == 2
    assert "do not fit" in capsys.readouterr().err
    unsafe = tmp_path / "unsafe.prototxt"
    unsafe.write_text(model[0].read_text() + 'layer { name: "py" type: "Python" '
                      'bottom: "data" top: "x" python_param { module: "os" layer: "x" } }\n')
    assert deblur([d, "--out", out, "--deploy", unsafe, "--weights", model[1]]) == 2
    assert "--allow-python-layers" in capsys.readouterr().err
    assert not out.exists()


def test_output_that_would_overwrite_its_input_is_refused(tmp_path, model, capsys):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "same.png")
    before = (tmp_path / "same.png").read_bytes()
    assert deblur([tmp_path / "same.png", "--out", tmp_path, "--deploy", model[0],
                   "--weights", model[1]]) == 2
    assert "would overwrite the input" in capsys.readouterr().err
    assert (tmp_path / "same.png").read_bytes() == before


def test_console_command_runs_with_the_opencv_backend(tmp_path, model):
    Image.fromarray(np.full((9, 13, 3), 128, np.uint8)).save(tmp_path / "x.png")
    proc = subprocess.run([sys.executable, "-m", "mrfnet.cli", "deblur", str(tmp_path / "x.png"),
                           "--out", str(tmp_path / "o"), "--backend", "opencv",
                           "--deploy", str(model[0]), "--weights", str(model[1])],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "opencv" in proc.stderr and _shape(tmp_path / "o" / "x.png") == (9, 13)


_NO_CAFFE = """
import sys, argparse
sys.modules["caffe"] = None  # any `import caffe` now fails, as on a machine without Caffe
from mrfnet.commands import deblur as command
from inference.compose import caption, caption_height, side_by_side
p = argparse.ArgumentParser()
command.add_arguments(p)
sys.exit(command.run(p.parse_args(sys.argv[1:])))
"""


def test_opencv_backend_needs_no_caffe(tmp_path, model):
    Image.fromarray(np.full((12, 10, 3), 90, np.uint8)).save(tmp_path / "y.png")
    proc = subprocess.run([sys.executable, "-c", _NO_CAFFE, str(tmp_path / "y.png"),
                           "--out", str(tmp_path / "o"), "--backend", "opencv",
                           "--deploy", str(model[0]), "--weights", str(model[1])],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert _shape(tmp_path / "o" / "y.png") == (12, 10)
