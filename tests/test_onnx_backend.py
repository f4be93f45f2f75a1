"""The onnxruntime backend of `mrfnet deblur` / `mrfnet eval`: the CPU default, made from the
shipped caffemodel on a fresh cache without any extra step, the same padding and tiling as the
other backends, a memory model measured in a fresh process, and no Caffe needed for an .onnx."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image


from inference.backends import load
from inference.tiling import (MEM_SAFETY, deblur_float, pad_to_stride, plan_for,
                              run_plan)
from test_inference_fixtures import _probe, make_model
from test_onnx_export import own_cache  # noqa:F401  (autouse: a temporary ONNX cache)

REPO = Path(__file__).resolve().parents[1]


def _run(args, env=None, code=None):
    cmd = [sys.executable, "-c", code, *map(str, args)] if code else \
        [sys.executable, "-m", "mrfnet.cli", *map(str, args)]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, **(env or {})))


def test_deblur_defaults_to_onnxruntime_and_exports_the_shipped_model_itself(tmp_path):
    """A fresh clone: no .onnx anywhere, no --weights, no --backend: it just works, and the
    second run reuses the export (fp32, and int8 where --precision auto picks it)."""
    from inference.models import resolve_model
    from inference.quantize import default_precision

    Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 45, 3), np.uint8)).save(
        tmp_path / "p.png")
    env = {"MRFNET_CACHE": str(tmp_path / "cache")}
    first = _run(["deblur", tmp_path / "p.png", "--out", tmp_path / "o"], env)
    assert first.returncode == 0, first.stderr
    assert "on onnxruntime (cpu" in first.stderr and "exported" in first.stderr
    auto = default_precision(resolve_model("mrfnet")[1])
    int8 = auto == "int8"
    assert f"cpu, {auto}," in first.stderr
    cached = sorted((tmp_path / "cache" / "onnx").glob("mrfnet-*.onnx"))
    assert [("-int8-" in p.name) for p in cached] == [False, True][:1 + int8]
    second = _run(["deblur", tmp_path / "p.png", "--out", tmp_path / "o2"], env)
    assert second.returncode == 0 and "exported" not in second.stderr
    assert sorted((tmp_path / "cache" / "onnx").glob("*.onnx")) == cached
    fp32 = _run(["deblur", tmp_path / "p.png", "--out", tmp_path / "o32", "--precision", "fp32"],
                env)
    ref = _run(["deblur", tmp_path / "p.png", "--out", tmp_path / "ref", "--backend", "caffe"])
    a, a32, b = (np.asarray(Image.open(tmp_path / d / "p.png"), np.int16)
                 for d in ("o", "o32", "ref"))
    assert ref.returncode == 0 and fp32.returncode == 0 and a.shape == (30, 45, 3)
    assert np.abs(a32 - b).max() <= 1  # float outputs within 1e-5: at most a rounding step apart
    if int8:  # int8 against pycaffe on this noise image: measured 49.8 dB, max 3 levels
        assert 10 * np.log10(255 ** 2 / np.mean((a - b) ** 2.0)) >= 45


def test_tiles_and_padding_as_the_other_backends(tmp_path):
    deploy, weights = make_model(tmp_path, paths=3)
    img = np.random.default_rng(2).random((150, 101, 3), dtype=np.float32)
    ort, ref = load(deploy, weights, "onnxruntime"), load(deploy, weights, "caffe")
    fixed, per_pixel = ort.memory_model()
    limit = (fixed + 90 * 90 * per_pixel) * MEM_SAFETY / 2 ** 20  # room for 90x90 px per tile
    a, plan = deblur_float(ort, img, limit, overlap=16)
    assert plan.tiled and a.shape == img.shape
    assert plan == plan_for(ort, 150, 101, limit, 16)
    # pycaffe on the same tiles of the same padded image (its own memory model plans others)
    b = run_plan(ref, pad_to_stride(img, ref.stride)[0], plan)[:150, :101]
    assert np.abs(a - b).max() <= 1e-5


def test_memory_model_covers_a_real_forwards_peak(tmp_path):
    """Measured at 256x256 in a fresh process; must cover a 384x384 forward's peak growth with
    the planner's safety factor and not be far above it (as for OpenCV). 384x384 is where ONNX
    Runtime's default power-of-two arena needed 1.3x the memory per pixel of 256x256."""
    deploy, weights = make_model(tmp_path, paths=4)
    onnx_file = tmp_path / "m.onnx"
    from inference.onnx_export import export
    export(deploy, weights, onnx_file)
    estimate = _probe(deploy, onnx_file, "onnxruntime", "estimate", 384)
    measured = _probe(deploy, onnx_file, "onnxruntime", "measure", 384)
    assert measured > 50e6
    assert measured <= MEM_SAFETY * estimate, (estimate, measured)
    assert estimate <= 2.0 * measured, (estimate, measured)
    b = load(deploy, onnx_file, "onnxruntime")
    fixed, per_pixel = b.memory_model()
    assert 0.95 * onnx_file.stat().st_size <= fixed <= onnx_file.stat().st_size  # the weights
    total = sum(b.graph.blob_bytes(256, 256).values()) / 256 / 256
    assert per_pixel < 0.5 * total  # the measurement, not the sum-of-blobs fallback


_NO_CAFFE = """
import sys, argparse
sys.modules["caffe"] = None  # any `import caffe` now fails, as on a machine without Caffe
from mrfnet.commands import deblur as command
p = argparse.ArgumentParser()
command.add_arguments(p)
sys.exit(command.run(p.parse_args(sys.argv[1:])))
"""


def test_an_exported_file_runs_without_caffe(tmp_path):
    deploy, weights = make_model(tmp_path)
    from inference.onnx_export import export
    onnx_file = export(deploy, weights, tmp_path / "m.onnx")
    Image.fromarray(np.full((12, 10, 3), 90, np.uint8)).save(tmp_path / "y.png")
    proc = _run([tmp_path / "y.png", "--out", tmp_path / "o", "--backend", "onnxruntime",
                 "--deploy", deploy, "--weights", onnx_file], code=_NO_CAFFE)
    assert proc.returncode == 0, proc.stderr
    assert Image.open(tmp_path / "o" / "y.png").size == (10, 12)


def test_eval_runs_and_times_the_onnxruntime_backend(tmp_path):
    rng = np.random.default_rng(3)
    for name in ("a.png", "b.png"):
        for kind in ("blur", "sharp"):
            (tmp_path / kind).mkdir(exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (40, 56, 3), np.uint8)).save(tmp_path / kind / name)
    out = tmp_path / "run"
    proc = _run(["eval", "--blur", tmp_path / "blur", "--sharp", tmp_path / "sharp",
                 "--backend", "caffe", "--backend", "onnxruntime", "--out", out],
                env={"MRFNET_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads((out / "summary.json").read_text())["results"]
    assert set(res) == {"caffe", "onnxruntime"}
    assert abs(res["caffe"]["psnr"] - res["onnxruntime"]["psnr"]) < 0.01
    assert res["onnxruntime"]["load_s"] > 0 and res["onnxruntime"]["forward_mean_s"] > 0


def test_session_options_reach_onnx_runtime(tmp_path):
    """The defaults (threads: ONNX Runtime's choice, all graph optimisations, the exact-size
    arena, idle threads sleeping) and each option the bench varies."""
    deploy, weights = make_model(tmp_path)
    from inference.onnx_export import export
    onnx_file = export(deploy, weights, tmp_path / "m.onnx")

    def entry(so, key):
        try:
            return so.get_session_config_entry(key)
        except RuntimeError:  # not set
            return None

    def options(**kw):
        so = load(deploy, onnx_file, "onnxruntime", **kw).session.get_session_options()
        return (so.intra_op_num_threads, str(so.graph_optimization_level).split(".")[-1],
                so.enable_cpu_mem_arena, entry(so, "session.use_env_allocators"),
                entry(so, "session.intra_op.allow_spinning"))

    assert options() == (0, "ORT_ENABLE_ALL", True, "1", "0")
    assert options(threads=1, optimization="basic", arena=False, spinning=True) == (
        1, "ORT_ENABLE_BASIC", False, None, "1")
