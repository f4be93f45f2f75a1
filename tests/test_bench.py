"""The benchmark's moving parts (not its numbers): levers reach the measured process, the
per-layer-type profile runs on real Caffe, and the report shows before/after rows."""
import json
import os
import subprocess
import sys
from pathlib import Path

from benchmarks import bench
from mrfnet.commands import bench as bench_command

REPO = Path(__file__).resolve().parents[1]


def test_levers_change_only_what_they_name():
    environ = {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "512", "PYTHONPATH": "/x", "HOME": "/h"}
    lv = bench.levers(baseline_caffe="/builds/stock", environ=environ, before_caffe="/builds/0003")
    ort = {"graph opt extended", "graph opt basic", "no memory arena",  # tests/test_onnx_bench.py
           "thread spinning", "int8"}
    omp = {"pthread OpenBLAS", "no batch-wide GEMM", "OpenMP threads spin",  # Caffe patch 0004
           bench.WORKERS_LEVER}  # mrfnet train --workers 2
    assert set(lv) == {"default", "1 thread", "OpenBLAS detects CPU", "Winograd off",
                       "no blob reuse", "stock Caffe", "patches 0001-0003"} | ort | omp
    detect = bench.lever_env(lv["OpenBLAS detects CPU"], environ)
    assert "OPENBLAS_CORETYPE" not in detect and "OPENBLAS_L2_SIZE" not in detect
    assert detect["HOME"] == "/h"
    stock = bench.lever_env(lv["stock Caffe"], environ)
    assert stock["PYTHONPATH"].split(":") == ["/builds/stock/python", "/x"]
    assert stock["OPENBLAS_CORETYPE"] == "Haswell"
    assert bench.lever_env(lv["1 thread"], environ)["OPENBLAS_NUM_THREADS"] == "1"
    assert bench.lever_env(lv["no blob reuse"], environ)["MRFNET_BLOB_REUSE"] == "0"
    assert bench.lever_env(lv["patches 0001-0003"], environ)["PYTHONPATH"].split(":") == ["/builds/0003/python", "/x"]
    assert bench.lever_env(lv["1 thread"], environ)["OMP_NUM_THREADS"] == "1"
    pthread = bench.lever_env(lv["pthread OpenBLAS"], dict(environ, LD_LIBRARY_PATH="/l"))
    assert pthread["LD_LIBRARY_PATH"].split(":") == [bench.PTHREAD_OPENBLAS, "/l"]
    assert "LD_LIBRARY_PATH" not in bench.lever_env(lv["default"], environ)
    assert bench.lever_env(lv["no batch-wide GEMM"], environ)["MRFNET_CONV_BATCH_COLUMNS"] == "0"
    assert bench.lever_env(lv["OpenMP threads spin"], environ)["OMP_WAIT_POLICY"] == "ACTIVE"
    # without a pinned core or a baseline build those levers do not exist
    assert set(bench.levers(environ={})) == {"default", "1 thread", "Winograd off", "no blob reuse"} | ort | omp
    assert lv[bench.WORKERS_LEVER]["train_workers"] == 2 and lv[bench.WORKERS_LEVER]["training_only"]


# One thread in both processes: with two OpenMP threads each of the ~100 small layers of a 64x48
# forward waits for a thread wake-up, which on a loaded machine made the per-layer sum 8x the
# whole forward (a property of the load, not of the code under test).
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
_WHOLE = """
import statistics, sys, time
import numpy as np
import caffe
caffe.set_mode_cpu()
deploy, weights, width, height, repeat = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])
net = caffe.Net(deploy, caffe.TEST, weights=weights)
net.blobs["data"].reshape(1, 3, height, width)
net.reshape()
net.blobs["data"].data[...] = np.random.default_rng(0).uniform(0, 1, (1, 3, height, width))
net.forward()
times = []
for _ in range(repeat):
    t0 = time.perf_counter()
    net.forward()
    times.append(time.perf_counter() - t0)
print(1000 * statistics.median(times))
"""


def _whole_forward_ms(deploy, weights, width, height, repeat=5):
    """Milliseconds of one whole pycaffe forward (median of `repeat`, after a warm-up), timed
    by a wall clock in a fresh one-thread process: a measurement independent of the worker's
    per-layer sums."""
    proc = subprocess.run([sys.executable, "-c", _WHOLE, str(deploy), str(weights), str(width),
                           str(height), str(repeat)], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, GLOG_minloglevel="2", **ONE_THREAD))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return float(proc.stdout.strip().splitlines()[-1])


def test_profile_worker_times_every_layer_type_of_a_real_net():
    deploy, weights = REPO / "models/mrfnet/deploy.prototxt", REPO / "models/mrfnet/mrfnet.caffemodel"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.worker", "profile",
                           "--deploy", str(deploy), "--weights", str(weights), "--size", "64x48",
                           "--repeat", "3"], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, **ONE_THREAD))
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"Convolution kxk", "Convolution 1x1", "Pooling", "ReLU", "Deconvolution", "Eltwise"} <= set(r["ms_by_type"])
    assert all(v >= 0 for v in r["ms_by_type"].values())
    # the per-layer total against a whole forward timed here (total_ms is by definition the sum
    # of ms_by_type, so that sum says nothing); a wide ratio: this machine is shared and noisy
    whole = _whole_forward_ms(deploy, weights, 64, 48)
    assert 1 / 3 < r["total_ms"] / whole < 3, (r["total_ms"], whole)
    assert r["blas_core"]  # OpenBLAS is loaded with Caffe and names its kernels


def _fake_result():
    fwd = dict(variant="mrfnet", size="256x256", backend="caffe", load_s=0.3, forward_median_s=0.25,
               gflops=100.0, peak_rss_mb=600, weights="shipped", blas_core="Haswell")
    return {
        "machine": {"cpu": "cpu", "cores": 2, "python": "3.11", "numpy": "1", "opencv": "4",
                    "blas": "OpenBLAS", "env": {"OPENBLAS_CORETYPE": "Haswell"}},
        "started": "a", "finished": "b", "load_before": (0.1, 0.2, 0.3), "load_after": (1, 1, 1),
        "levers": {"default": {}, "OpenBLAS detects CPU": {}, "stock Caffe": {}},
        "baseline_caffe": "/stock",
        "layers": [dict(layer="3x3", backend="caffe", lever="default", median_s=0.01, gflops=200.0)],
        "forward": [dict(fwd, lever="default"), dict(fwd, lever="stock Caffe", forward_median_s=0.6,
                                                     gflops=40.0, peak_rss_mb=1000)],
        "profile": [{"variant": "mrfnet", "size": "256x256", "lever": "default", "total_ms": 100.0,
                     "ms_by_type": {"Pooling": 25.0, "Convolution kxk": 75.0}},
                    {"variant": "mrfnet", "size": "256x256", "lever": "stock Caffe", "total_ms": 200.0,
                     "ms_by_type": {"Pooling": 120.0, "Convolution kxk": 80.0}}],
        "training": [dict(label="demo setting", batch=8, crop=64, lever="default",
                          seconds_per_iter=1.0, peak_rss_mb=700),
                     dict(label="demo setting", batch=8, crop=64, lever="patches 0001-0003",
                          seconds_per_iter=1.6, peak_rss_mb=690),
                     dict(label="demo setting", batch=8, crop=64, lever="--workers 2",
                          seconds_per_iter=0.8, peak_rss_mb=980),
                     dict(label="paper setting", batch=16, crop=256, lever="default",
                          seconds_per_iter=8.0, peak_rss_mb=7000),
                     dict(label="paper setting", batch=16, crop=256, lever="stock Caffe",
                          seconds_per_iter=16.0, peak_rss_mb=7000)],
        "data": {"writers": {"lmdb": {"patches_per_s": 1, "bytes_per_patch": 2},
                             "hdf5": {"patches_per_s": 3, "bytes_per_patch": 4}},
                 "convert": {"lmdb": {"patches_per_s": 5}, "hdf5": {"patches_per_s": 6}}},
    }


def test_report_shows_the_stock_build_beside_the_patched_one():
    text = bench.markdown(_fake_result())
    assert "| mrfnet | 256x256 | caffe | stock Caffe | Haswell | 0.30 | 0.600 | 40.0 | 20% | 1000 |" in text
    assert "| mrfnet | 256x256 | caffe | default | Haswell | 0.30 | 0.250 | 100.0 | 50% | 600 |" in text
    assert "| Pooling | 25.0 | 25% | 120.0 | 60% |" in text
    assert "| total | 100.0 | 100% | 200.0 | 100% |" in text
    assert "**stock Caffe**" in text and "OPENBLAS_CORETYPE=Haswell" in text
    assert ("- pycaffe MRFNet 256x256, this project's build vs stock Caffe: 2.40x the speed, "
            "0.60x the peak memory (0.600 -> 0.250 s, 1000 -> 600 MB)") in text
    assert ("- training, demo setting, this build vs patches 0001-0003 (patch 0004): 1.60x the "
            "speed, 1.01x the peak memory (1.600 -> 1.000 s/iteration)") in text
    assert ("- training, paper setting, this project's build vs stock Caffe: 2.00x the speed, "
            "1.00x the peak memory (16.000 -> 8.000 s/iteration)") in text
    assert "| paper setting | 16 | 256x256 | stock Caffe | 16.00 | 7000 |" in text
    assert ("- training, demo setting, `mrfnet train --workers 2` vs one process of patches "
            "0001-0003: 2.00x the speed, 1.42x the peak memory (1.600 -> 0.800 s/iteration)") in text
    assert "`mrfnet train --workers 2` vs one process of this build: 1.25x the speed" in text


def test_bench_refuses_a_baseline_folder_without_pycaffe(tmp_path, capsys):
    import argparse
    p = argparse.ArgumentParser()
    bench_command.add_arguments(p)
    args = p.parse_args(["--out", str(tmp_path / "out"), "--baseline-caffe", str(tmp_path)])
    assert bench_command.run(args) == 2
    assert "no built pycaffe there" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_report_only_rewrites_the_markdown_from_the_json(tmp_path):
    import argparse
    (tmp_path / "benchmarks.json").write_text(json.dumps(_fake_result()))
    p = argparse.ArgumentParser()
    bench_command.add_arguments(p)
    assert bench_command.run(p.parse_args(["--out", str(tmp_path), "--report-only"])) == 0
    assert "| Pooling | 25.0 | 25% | 120.0 | 60% |" in (tmp_path / "benchmarks.md").read_text()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert bench_command.run(p.parse_args(["--out", str(empty), "--report-only"])) == 2
    assert not (empty / "benchmarks.md").exists()


def test_report_keeps_this_machines_home_out_of_committed_paths():
    home = Path.home()
    assert bench._portable(home / ".cache" / "mrfnet-caffe" / "caffe-x") == "~/.cache/mrfnet-caffe/caffe-x"
    assert bench._portable(str(home / "a")) == "~/a"
    assert bench._portable(3) == 3 and bench._portable(None) is None


def test_video_worker_times_the_video_path_against_pure_inference():
    """`make bench`'s video rows at a tiny size: the real worker, default backend, shipped model."""
    proc = subprocess.run([sys.executable, "-m", "benchmarks.worker", "video",
                           "--backend", "onnxruntime", "--deploy", "models/mrfnet/deploy.prototxt",
                           "--weights", "models/mrfnet/mrfnet.caffemodel", "--size", "64x48",
                           "--frames", "3"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["frames"] == 3 and r["pure_s"] > 0 and r["video_s"] > 0
    assert abs(r["video_fps"] * r["video_s"] - 3) < 1e-6
    assert r["ensemble_factor"] > 1  # eight forwards cannot cost less than one
    text = "\n".join(bench.video_markdown([dict(r, size="64x48", backend="onnxruntime")]))
    assert f"| 64x48 | onnxruntime | 3 | {r['pure_fps']:.2f} | {r['video_fps']:.2f} |" in text


def test_bench_video_rows_run_the_default_backend(monkeypatch):
    import benchmarks.video as bv
    monkeypatch.setattr(bv, "VIDEO_SIZES", (("64x48", 2), ("128x96", 2)))
    rows = bench._video(quick=True)
    assert [(r["size"], r["backend"], r["frames"]) for r in rows] == [("64x48", "onnxruntime", 2)]


def test_report_shows_int8_rows_ratios_and_quality():
    res = _fake_result()
    fwd = res["forward"][0]
    res["forward"] += [dict(fwd, backend="onnxruntime", lever="default", forward_median_s=0.2,
                            peak_rss_mb=300),
                       dict(fwd, backend="onnxruntime", lever="int8", forward_median_s=0.1,
                            peak_rss_mb=250),
                       dict(fwd, backend="opencv", lever="default", forward_median_s=0.25,
                            peak_rss_mb=280)]
    res["int8_quality"] = {"pairs": 42, "val": "val42", "fp32_psnr": 25.66, "int8_psnr": 25.65,
                           "mean_diff_db": -0.0129, "max_abs_diff_db": 0.079,
                           "worst": "a.png", "passes": True}
    text = bench.markdown(res)
    assert ("- MRFNet 256x256, ONNX Runtime int8 vs fp32: 2.00x the speed, 0.83x the peak "
            "memory (0.200 -> 0.100 s, 300 -> 250 MB)") in text
    assert "- MRFNet 256x256, ONNX Runtime int8 vs OpenCV dnn: 2.50x the speed" in text
    assert "mean -0.0129 dB, largest move on one pair 0.079 dB (a.png)" in text
    assert "no pair beyond 0.1 dB) holds" in text
    res["int8_quality"] = None
    assert "make bench VAL=DIR" in bench.markdown(res)


def test_int8_quality_flags_a_model_that_moves_a_pair(tmp_path, monkeypatch):
    """benchmarks.int8.quality on real pairs: the same model twice passes; the rule fails when
    one file's outputs are shifted (a stand-in 'int8' model that is off by a constant)."""
    import cv2

    from benchmarks import int8
    from data_prep import bundled
    from test_inference_fixtures import make_model
    from inference.onnx_export import export

    deploy, weights = make_model(tmp_path / "m")
    onnx = export(deploy, weights, tmp_path / "m.onnx")
    for sub in ("blur", "sharp"):
        (tmp_path / "val" / sub).mkdir(parents=True)
    for name in bundled.names("heldout")[:2]:
        img = cv2.resize(bundled.load(name), (64, 64))
        cv2.imwrite(str(tmp_path / "val" / "blur" / f"{name}.png"), img)
        cv2.imwrite(str(tmp_path / "val" / "sharp" / f"{name}.png"), img)
    same = int8.quality(deploy, onnx, onnx, tmp_path / "val")
    assert same["pairs"] == 2 and same["mean_diff_db"] == 0 and same["passes"]
    from inference import backends

    real_load = backends.load

    def shifted(deploy_, weights_, name, **kw):
        net = real_load(deploy_, weights_, name, **kw)
        if str(weights_).endswith("shift.onnx"):
            forward = net._forward
            net._forward = lambda x: forward(x) + 0.05
        return net

    (tmp_path / "shift.onnx").write_bytes(onnx.read_bytes())
    monkeypatch.setattr(backends, "load", shifted)
    moved = int8.quality(deploy, onnx, tmp_path / "shift.onnx", tmp_path / "val")
    assert moved["max_abs_diff_db"] > 0.1 and not moved["passes"]
