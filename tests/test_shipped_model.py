"""What the shipped MRFNet (models/mrfnet/mrfnet.caffemodel, MODEL.md) really does, on pairs
rendered afresh here (other kernels than MODEL.md's tables): the test aerial tiles (never trained
on, never used for a choice) and the bundled held-out photos. The thresholds sit a little below the gains measured for
MODEL.md, so a worse model fails."""
import subprocess

import numpy as np
import pytest

from data_prep import bundled, holdout, sources
from data_prep.pairs import render_pairs
from mrfnet.commands.demo import render_pairs as demo_pairs
from evaluation.evaluate import evaluate, summarize
from inference.backends import load
from inference.models import resolve_model

# measured on exactly these pairs (the 112 test tiles at seed 2024, the bundled photos at seed 7)
# for MODEL.md: +1.31 dB aerial (SSIM 0.675 -> 0.741), worst tile -1.94 dB, +1.38 dB bundled;
# the model shipped before it: +1.21, -1.58, +1.28 (it fails the aerial and bundled bounds).
# The targets (+2.5 dB, worst -0.1 dB, bundled +2 dB) are not met.
AERIAL_MIN_GAIN_DB = 1.28
BUNDLED_MIN_GAIN_DB = 1.33
WORST_IMAGE_DB = -2.0


@pytest.fixture(scope="module")
def shipped():
    deploy, weights = resolve_model("mrfnet")
    return load(str(deploy), str(weights), "caffe")


def test_the_test_tiles_are_the_heldout_tiles_minus_the_validation_tiles():
    from evaluation.model_report import HELDOUT_LIST, TEST_LIST, VAL_LIST
    heldout, val, test = (holdout.read_list(p) for p in (HELDOUT_LIST, VAL_LIST, TEST_LIST))
    assert set(val) <= set(heldout) and not set(val) & set(test)
    assert sorted(test) == sorted(set(heldout) - set(val)) and len(test) == len(set(test)) == 112


def test_shipped_model_deblurs_the_test_aerial_tiles(shipped, aerial_images, tmp_path):
    """Every test tile (never trained on, never used for a choice), with kernels of its own."""
    from evaluation.model_report import TEST_LIST
    items = holdout.select(sources.sharp_folder(aerial_images), holdout.read_list(TEST_LIST),
                           keep=True, option="test")
    rows = evaluate(render_pairs(items, tmp_path / "aerial", seed=2024), shipped)
    s = summarize(rows)
    assert s["psnr"] - s["psnr_blur"] >= AERIAL_MIN_GAIN_DB, s
    assert s["ssim"] > s["ssim_blur"], s
    worst = min(r.psnr - r.psnr_blur for r in rows)
    assert worst >= WORST_IMAGE_DB, [(r.name, r.psnr - r.psnr_blur) for r in rows]


def test_shipped_model_deblurs_the_bundled_heldout_photos(shipped, tmp_path):
    items = demo_pairs(bundled.names("heldout"), tmp_path / "pairs", seed=7, split_id=1)
    s = summarize(evaluate(items, shipped))
    assert s["psnr"] - s["psnr_blur"] >= BUNDLED_MIN_GAIN_DB, s
    assert s["ssim"] > s["ssim_blur"], s


def test_deblur_command_uses_the_shipped_model_by_default(tmp_path, venv_bin):
    items = demo_pairs(["coffee"], tmp_path / "pairs", seed=3, split_id=1)
    out = tmp_path / "out"
    proc = subprocess.run([str(venv_bin / "mrfnet"), "deblur", items[0].blur, "--out", str(out),
                           "--side-by-side"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    from data_prep.imageio import read_image
    result = read_image(out / "coffee.png")
    assert result.shape == read_image(items[0].blur).shape
    assert not np.array_equal(result, read_image(items[0].blur))
    assert (out / "side_by_side" / "coffee.png").exists()
