"""The shipped MRFNet weights (models/mrfnet/) load into the committed deploy net and deblur
held-out bundled photos, blurred with the authors' recipe, measurably better than the input."""
import subprocess

import numpy as np

from data_prep import bundled
from evaluation.demo import render_pairs
from evaluation.evaluate import evaluate, summarize
from inference.backends import load
from inference.models import resolve_model


def test_shipped_model_beats_the_blurred_input_on_heldout_photos(tmp_path):
    deploy, weights = resolve_model("mrfnet")
    items = render_pairs(bundled.names("heldout"), tmp_path / "pairs", seed=7, split_id=1)
    rows = evaluate(items, load(str(deploy), str(weights), "caffe"))
    s = summarize(rows)
    assert s["psnr"] > s["psnr_blur"] + 0.1, s
    assert s["ssim"] > s["ssim_blur"], s


def test_deblur_command_uses_the_shipped_model_by_default(tmp_path, venv_bin):
    items = render_pairs(["coffee"], tmp_path / "pairs", seed=3, split_id=1)
    out = tmp_path / "out"
    proc = subprocess.run([str(venv_bin / "mrfnet"), "deblur", items[0].blur, "--out", str(out),
                           "--side-by-side"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    from data_prep.imageio import read_image
    result = read_image(out / "coffee.png")
    assert result.shape == read_image(items[0].blur).shape
    assert not np.array_equal(result, read_image(items[0].blur))
    assert (out / "side_by_side" / "coffee.png").exists()
