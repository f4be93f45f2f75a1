"""The int8 ONNX model (inference.quantize, `mrfnet export --int8`, `--precision`): agreement
with fp32 on real photos, a calibration set of training photos only, a cache key that follows
the weights and the calibration set, and clear refusals."""
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from data_prep import bundled
from inference import quantize
from inference.backends import load
from inference.errors import InferenceError
from inference.models import resolve_model
from inference.onnx_export import cache_path
from layers.metrics import psnr, to_uint8
from test_inference_fixtures import make_model
from test_onnx_export import own_cache  # noqa: F401  (autouse: a temporary ONNX cache)

REPO = Path(__file__).resolve().parents[1]
# PSNR of the shipped model's int8 output against its fp32 output, uint8 images, each bundled
# held-out photo blurred by the recipe: measured 45.5 (gravel), 46.7 (camera), 51.0 (rocket),
# 51.5 dB (coffee); the model's own error against the sharp photos is about 25 dB, so int8 adds
# well under 1/100 of that error power.
AGREEMENT_DB = 42.0


def _run(*args):
    return subprocess.run([sys.executable, "-m", "mrfnet.cli", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def shipped():
    return resolve_model("mrfnet")


def _blurred_heldout():
    """The bundled held-out photos blurred by the recipe (real photos, never calibrated on)."""
    from data_prep.recipe import Recipe, render, sample_streams

    return [(n, render(bundled.load(n), Recipe(size=256), sample_streams(7, i, 0, 1))[0])
            for i, n in enumerate(bundled.names("heldout"))]


def test_int8_output_agrees_with_fp32_on_real_photos(shipped):
    fp32 = load(*shipped, "onnxruntime", precision="fp32")
    int8 = load(*shipped, "onnxruntime", precision="int8")
    assert int8.precision == "int8" and fp32.precision == "fp32"
    for name, img in _blurred_heldout():
        x = np.ascontiguousarray((img.astype(np.float32) / 255).transpose(2, 0, 1)[None])
        a = to_uint8(fp32.forward(x)[0].transpose(1, 2, 0))
        b = to_uint8(int8.forward(x)[0].transpose(1, 2, 0))
        assert not np.array_equal(a, b), "int8 and fp32 gave identical pixels: not quantized?"
        assert psnr(b, a) >= AGREEMENT_DB, name


def test_int8_model_is_quantized_and_says_so(shipped):
    path, fresh = quantize.cached_int8_export(*shipped)
    model = onnx.load(str(path))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    props = {p.key: p.value for p in model.metadata_props}
    assert props["mrfnet.precision"] == "int8"
    assert props["mrfnet.weights_sha256"]  # carried over from the fp32 export
    assert quantize.cached_int8_export(*shipped) == (path, False)  # cached
    assert path.stat().st_size < 0.4 * cache_path(*shipped).stat().st_size  # int8 weights
    # the deconvolutions became int8 convolutions (inference.subpixel) ...
    assert "ConvTranspose" not in ops and "DepthToSpace" in ops
    assert {f"deconv{i}/phases" for i in (1, 2, 3)} <= {n.name for n in model.graph.node}
    # ... and each CRP sum1 feeds its sum2 in fp32, with no QuantizeLinear between (KEEP_FP32)
    readers = {}
    for n in model.graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    for r in range(1, 5):
        assert [(n.op_type, n.name) for n in readers[f"crp_r{r}_sum1"]] == [
            ("Add", f"crp_r{r}_sum2")]


def test_bundled_calibration_holds_training_photos_only():
    names = [n.rsplit("_s", 1)[0] for n, _ in quantize.bundled_calibration()]
    assert set(names) == set(bundled.names("train"))
    assert not set(names) & set(bundled.names("heldout"))


def test_a_calibration_folder_with_heldout_tiles_is_refused(tmp_path):
    held = sorted(quantize.heldout_names())
    assert len(held) == 126  # models/mrfnet/heldout_aerial.txt: validation + test tiles
    img = np.full((32, 32, 3), 128, np.uint8)
    cv2.imwrite(str(tmp_path / "train_tile.png"), img)
    cv2.imwrite(str(tmp_path / f"{held[0]}.jpg"), img)
    with pytest.raises(InferenceError, match=f"held-out.*{held[0]}"):
        quantize.calibration_key(tmp_path)
    with pytest.raises(InferenceError, match="held-out"):
        quantize.calibration_set(tmp_path)


def test_cache_key_follows_weights_and_calibration(tmp_path, shipped):
    a = tmp_path / "a"
    b = tmp_path / "b"
    for folder, value in ((a, 100), (b, 101)):
        folder.mkdir()
        cv2.imwrite(str(folder / "x.png"), np.full((40, 40, 3), value, np.uint8))
    keys = {quantize.calibration_key(None), quantize.calibration_key(a),
            quantize.calibration_key(b)}
    assert len(keys) == 3
    assert quantize.calibration_key(a) == quantize.calibration_key(a)
    fp32 = cache_path(*shipped)
    other = cache_path(*make_model(tmp_path / "m"))
    key = quantize.calibration_key(None)
    paths = {quantize.int8_cache_path(fp32, key), quantize.int8_cache_path(other, key),
             quantize.int8_cache_path(fp32, quantize.calibration_key(a))}
    assert len(paths) == 3


def test_calibration_inputs_are_cropped_to_the_stride(tmp_path):
    cv2.imwrite(str(tmp_path / "wide.png"), np.zeros((300, 1000, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "small.png"), np.zeros((37, 45, 3), np.uint8))
    inputs, names = quantize.calibration_set(tmp_path, stride=8)
    assert names == ["small.png", "wide.png"]
    assert [x.shape for x in inputs] == [(1, 3, 32, 40), (1, 3, 256, 256)]
    assert all(x.dtype == np.float32 for x in inputs)


def test_default_precision_follows_the_cpu_flags_and_the_checked_weights(shipped, tmp_path):
    vnni = tmp_path / "vnni"
    vnni.write_text("processor : 0\nflags : fpu sse avx2 avx512f avx512_vnni\n")
    other_vnni = tmp_path / "avx_vnni"
    other_vnni.write_text("flags : avx2 avx_vnni\n")
    plain = tmp_path / "plain"
    plain.write_text("processor : 0\nflags : fpu sse avx2 fma\n")
    assert quantize.has_vnni(vnni) and quantize.has_vnni(other_vnni)
    assert not quantize.has_vnni(plain) and not quantize.has_vnni(tmp_path / "missing")
    weights = shipped[1]
    checked = quantize.weights_digest(weights) in quantize.INT8_DEFAULT_WEIGHTS
    assert quantize.default_precision(weights, plain) == "fp32"
    for cpu in (vnni, other_vnni):
        assert quantize.default_precision(weights, cpu) == ("int8" if checked else "fp32")
    own = tmp_path / "own.caffemodel"  # weights nobody checked: fp32 whatever the CPU
    own.write_bytes(Path(weights).read_bytes()[:-1] + b"\0")
    assert quantize.default_precision(own, vnni) == "fp32"


def test_int8_is_the_default_exactly_when_the_quality_rule_holds_on_the_validation_tiles(
        shipped, aerial_images, tmp_path):
    """The choice of INT8_DEFAULT_WEIGHTS, remade on the validation pairs (val_aerial.txt, three
    blur draws each, as `mrfnet pairs --draws 3` writes them; never the test tiles): int8 is the
    CPU default for the shipped weights only while its mean PSNR stays within 0.02 dB of fp32
    and no pair moves by 0.1 dB. Shipping new weights means measuring again and listing them."""
    from benchmarks.int8 import quality
    from data_prep import holdout, sources
    from data_prep.pairs import render_pairs
    from evaluation.model_report import VAL_LIST
    from inference.onnx_export import cached_export

    items = holdout.select(sources.sharp_folder(aerial_images), holdout.read_list(VAL_LIST),
                           keep=True, option="only")
    render_pairs(items, tmp_path / "val", seed=0, draws=3)
    fp32, _ = cached_export(*shipped)
    q = quality(shipped[0], fp32, quantize.cached_int8_export(*shipped)[0], tmp_path / "val")
    assert q["pairs"] == 42
    checked = quantize.weights_digest(shipped[1]) in quantize.INT8_DEFAULT_WEIGHTS
    assert q["passes"] == checked, q


def test_export_int8_writes_a_model_that_deblur_runs(tmp_path):
    deploy, weights = make_model(tmp_path / "m")
    out = tmp_path / "m8.onnx"
    r = _run("export", "--deploy", deploy, "--weights", weights, "--int8", "--onnx", out)
    assert r.returncode == 0, r.stderr
    assert "int8 vs pycaffe" in r.stderr and "dB" in r.stderr
    cv2.imwrite(str(tmp_path / "p.png"),
                np.random.default_rng(0).integers(0, 255, (40, 48, 3), np.uint8))
    r = _run("deblur", tmp_path / "p.png", "--out", tmp_path / "o", "--deploy", deploy,
             "--weights", out, "--backend", "onnxruntime")
    assert r.returncode == 0, r.stderr
    assert "int8" in r.stderr and (tmp_path / "o" / "p.png").is_file()
    # the fp32 file asked to run as int8, and the int8 one as fp32: refused, naming the file
    fp32 = tmp_path / "m32.onnx"
    assert _run("export", "--deploy", deploy, "--weights", weights, "--onnx", fp32,
                "--no-compare").returncode == 0
    for path, asked in ((fp32, "int8"), (out, "fp32")):
        r = _run("deblur", tmp_path / "p.png", "--out", tmp_path / "o2", "--deploy", deploy,
                 "--weights", path, "--backend", "onnxruntime", "--precision", asked)
        assert r.returncode == 2 and str(path) in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("backend", ["caffe", "opencv"])
def test_int8_on_other_backends_is_refused(tmp_path, backend):
    cv2.imwrite(str(tmp_path / "p.png"), np.zeros((32, 32, 3), np.uint8))
    r = _run("deblur", tmp_path / "p.png", "--out", tmp_path / "o", "--backend", backend,
             "--precision", "int8")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "onnxruntime only" in r.stderr and not (tmp_path / "o" / "p.png").exists()


def test_export_option_refusals(tmp_path):
    r = _run("export", "--calib", tmp_path, "--onnx", tmp_path / "x.onnx")
    assert r.returncode == 2 and "--calib is for --int8" in r.stderr
    r = _run("export", "--int8", "--calib", tmp_path / "nowhere", "--onnx", tmp_path / "x.onnx")
    assert r.returncode == 2 and "no such folder" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x.onnx").exists()
    r = _run("export", "--int8", "--fixed-size", "64x64", "--onnx", tmp_path / "x.onnx")
    assert r.returncode == 2 and "--fixed-size" in r.stderr


def test_eval_applies_int8_to_onnxruntime_only(tmp_path):
    """`mrfnet eval --backend caffe --backend onnxruntime --precision int8`: pycaffe stays the
    fp32 reference, onnxruntime runs int8, and the run files say which."""
    import json

    deploy, weights = make_model(tmp_path / "m")
    for sub in ("blur", "sharp"):
        (tmp_path / sub).mkdir()
        cv2.imwrite(str(tmp_path / sub / "a.png"),
                    np.random.default_rng(1).integers(0, 255, (32, 32, 3), np.uint8))
    r = _run("eval", "--blur", tmp_path / "blur", "--sharp", tmp_path / "sharp", "--deploy",
             deploy, "--weights", weights, "--backend", "caffe", "--backend", "onnxruntime",
             "--precision", "int8", "--out", tmp_path / "run")
    assert r.returncode == 0, r.stderr
    text = json.dumps(json.loads((tmp_path / "run" / "summary.json").read_text()))
    assert '"precision": "int8"' in text and '"precision": "fp32"' in text
