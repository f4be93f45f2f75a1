"""`mrfnet eval` on real pairs: identity "deblurring" of the GOPRO mini set reproduces the
blurred input's metrics computed independently here; a real net on both backends writes
per-image rows, summary and timing; bad pairs are refused; Table III memory is measured."""
import argparse
import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mrfnet.commands import eval as command
from evaluation.memory import training_peak_rss
from layers.metrics import ssim
from test_inference_fixtures import make_model

GOPRO_MINI = Path(__file__).resolve().parents[2] / "shared" / "data" / "gopro_mini"


def evaluate(argv):
    p = argparse.ArgumentParser()
    command.add_arguments(p)
    return command.run(p.parse_args([str(a) for a in argv]))


@pytest.fixture(scope="module")
def gopro():
    if not (GOPRO_MINI / "test").is_dir():
        pytest.fail(f"test data missing: {GOPRO_MINI} (CI places ../shared beside the checkout)")
    return GOPRO_MINI


def _psnr(a, b):
    """Written out here on purpose (not layers.metrics.psnr): 10 log10(255^2 / MSE)."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0 ** 2 / mse)


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_identity_on_gopro_mini_equals_the_blurred_inputs_metrics(tmp_path, gopro):
    assert evaluate(["--pairs", "gopro", gopro, "--identity", "--out", tmp_path]) == 0
    rows = {r["name"]: r for r in _rows(tmp_path / "per_image.csv")}
    summary = json.loads((tmp_path / "summary.json").read_text())
    pairs = sorted((gopro / "test").glob("*/blur/*.png"))
    assert len(pairs) == 2 and set(rows) == {f"{p.parts[-3]}/{p.name}" for p in pairs}
    expect_p, expect_s = [], []
    for blur in pairs:
        sharp = blur.parent.parent / "sharp" / blur.name
        a = np.asarray(Image.open(blur).convert("RGB"))  # PIL: RGB, independent of data_prep
        b = np.asarray(Image.open(sharp).convert("RGB"))
        expect_p.append(_psnr(a, b))
        expect_s.append(ssim(a, b, "matlab3d"))
        row = rows[f"{blur.parts[-3]}/{blur.name}"]
        assert (int(row["height"]), int(row["width"])) == a.shape[:2]
        assert float(row["psnr"]) == pytest.approx(expect_p[-1], abs=1e-9)
        assert float(row["psnr_blur"]) == pytest.approx(expect_p[-1], abs=1e-9)
        assert float(row["ssim"]) == pytest.approx(expect_s[-1], abs=1e-12)
        assert row["backend"] == "identity"
    res = summary["results"]["identity"]
    assert res["psnr"] == pytest.approx(np.mean(expect_p), abs=1e-9)
    assert res["ssim"] == pytest.approx(np.mean(expect_s), abs=1e-12)
    assert summary["baseline"]["psnr"] == pytest.approx(np.mean(expect_p), abs=1e-9)
    assert (summary["variant"], summary["dataset"], summary["ssim_variant"]) == \
        ("identity", "gopro", "matlab3d")
    assert 20 < np.mean(expect_p) < 30  # the README's 24.05 and 25.11 dB pairs


@pytest.fixture
def small_pairs(tmp_path, gopro):
    """Crops of the GOPRO mini pairs (odd sizes) in paired folders, to keep the nets fast."""
    crops = {"flower": (slice(300, 341), slice(600, 663)), "istanbul": (slice(200, 236),
                                                                       slice(100, 150))}
    root = tmp_path / "pairs"
    for kind in ("blur", "sharp"):
        (root / kind).mkdir(parents=True)
        for seq, (ys, xs) in crops.items():
            img = Image.open(gopro / "test" / seq / kind / "000001.png").convert("RGB")
            Image.fromarray(np.asarray(img)[ys, xs]).save(root / kind / f"{seq}.png")
    return root


def test_net_on_both_backends_writes_rows_summary_timing_and_outputs(tmp_path, small_pairs):
    deploy, weights = make_model(tmp_path / "m")
    out = tmp_path / "run"
    assert evaluate(["--pairs", "folders", small_pairs, "--deploy", deploy, "--weights", weights,
                     "--backend", "caffe", "--backend", "opencv", "--save-outputs",
                     "--dataset", "visdrone_like", "--out", out]) == 0
    rows = _rows(out / "per_image.csv")
    assert sorted((r["backend"], r["name"]) for r in rows) == [
        (b, n) for b in ("caffe", "opencv") for n in ("flower.png", "istanbul.png")]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset"] == "visdrone_like" and summary["paths"] == 2
    for backend in ("caffe", "opencv"):
        res = summary["results"][backend]
        assert res["load_s"] > 0 and res["forward_mean_s"] > 0 and res["warmup_images"] == 1
        assert res["image_sizes"] == [[36, 50], [41, 63]]
    for r in rows:
        sharp = np.asarray(Image.open(small_pairs / "sharp" / r["name"]))
        written = np.asarray(Image.open(out / "outputs" / r["backend"] / r["name"]))
        assert written.shape == sharp.shape
        assert float(r["psnr"]) == pytest.approx(_psnr(written, sharp), abs=1e-9)
        assert float(r["psnr"]) != pytest.approx(float(r["psnr_blur"]), abs=1e-3)
    by = {(r["backend"], r["name"]): float(r["psnr"]) for r in rows}
    for name in ("flower.png", "istanbul.png"):  # same net, two runtimes: same scores
        assert by[("caffe", name)] == pytest.approx(by[("opencv", name)], abs=0.05)


def test_ssim_variant_is_selectable_and_labelled(tmp_path, small_pairs):
    assert evaluate(["--blur", small_pairs / "blur", "--sharp", small_pairs / "sharp",
                     "--identity", "--ssim", "skimage", "--out", tmp_path / "sk"]) == 0
    assert evaluate(["--blur", small_pairs / "blur", "--sharp", small_pairs / "sharp",
                     "--identity", "--out", tmp_path / "m3"]) == 0
    sk = json.loads((tmp_path / "sk" / "summary.json").read_text())
    m3 = json.loads((tmp_path / "m3" / "summary.json").read_text())
    assert (sk["ssim_variant"], m3["ssim_variant"]) == ("skimage", "matlab3d")
    assert sk["dataset"] == "pairs"  # --blur DIR named "blur": its parent's name
    assert sk["baseline"]["psnr"] == pytest.approx(m3["baseline"]["psnr"], abs=1e-12)
    assert abs(sk["baseline"]["ssim"] - m3["baseline"]["ssim"]) > 1e-3


def test_bad_pairs_and_options_exit_2_with_a_message(tmp_path, small_pairs, capsys):
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(small_pairs / "sharp" / "flower.png")
    assert evaluate(["--pairs", "folders", small_pairs, "--identity", "--out", tmp_path]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "flower.png" in err and "10x10" in err
    assert evaluate(["--pairs", "lmdb", small_pairs, "--identity", "--out", tmp_path]) == 2
    assert "unknown kind" in capsys.readouterr().err
    assert evaluate(["--pairs", "gopro", tmp_path / "nope", "--identity", "--out", tmp_path]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert evaluate(["--identity", "--out", tmp_path]) == 2
    assert "nothing to do" in capsys.readouterr().err
    assert not (tmp_path / "summary.json").exists()


def test_training_memory_grows_with_the_batch_and_failures_are_reported():
    small = training_peak_rss("mrfnet", 2, crop=32, paths=2, iters=1)
    large = training_peak_rss("mrfnet", 8, crop=32, paths=2, iters=1)
    for r in (small, large):
        assert "error" not in r, r
        assert r["device"] == "cpu" and "RSS" in r["measure"]
        assert r["peak_rss_mb"] > r["baseline_rss_mb"] > 30
    # 6 more 32x32 crops; training keeps data and diff of every blob: measured ~10 KB per crop
    # pixel for this P=2 net, so well above 3 KB
    assert large["net_batch_mb"] - small["net_batch_mb"] > 6 * 32 * 32 * 3000 / 2 ** 20
    starved = training_peak_rss("mrfnet", 2, crop=32, paths=2, iters=1, limit_mb=64)
    assert "error" in starved and "64 MB" in starved["error"]
