"""ONNX Runtime in `mrfnet bench`: its levers reach the measured process, the worker times real
forwards and single layers with ONNX Runtime's options, and the report shows its rows and ratios
beside pycaffe and OpenCV."""
import json
import subprocess
import sys
from pathlib import Path

from benchmarks import bench
from test_bench import _fake_result
from test_inference_fixtures import make_model

REPO = Path(__file__).resolve().parents[1]


def test_onnxruntime_levers_are_its_own_options():
    lv = bench.levers(environ={})
    assert "onnxruntime" in lv["default"]["backends"] and "onnxruntime" in lv["1 thread"]["backends"]
    assert lv["1 thread"]["args"]["onnxruntime"] == ["--ort-threads", "1"]
    assert lv["graph opt extended"]["args"] == {"onnxruntime": ["--ort-opt", "extended"]}
    assert lv["graph opt basic"]["args"] == {"onnxruntime": ["--ort-opt", "basic"]}
    assert lv["no memory arena"]["args"] == {"onnxruntime": ["--ort-arena", "0"]}
    assert lv["thread spinning"]["args"] == {"onnxruntime": ["--ort-spin", "1"]}
    for name in ("graph opt extended", "graph opt basic", "no memory arena", "thread spinning"):
        assert lv[name]["backends"] == ("onnxruntime",) and lv[name]["whole_net"]
    sizes = {size: extra for _, size, _, extra in bench.FORWARDS}
    assert "no memory arena" in sizes["1280x720"]  # arena memory matters most on large frames


def _worker(*args):
    proc = subprocess.run([sys.executable, "-m", "benchmarks.worker", *map(str, args)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_worker_times_onnxruntime_with_its_options(tmp_path):
    from inference.onnx_export import export
    deploy, weights = make_model(tmp_path, paths=2)
    onnx_file = export(deploy, weights, tmp_path / "m.onnx")
    r = _worker("forward", "--backend", "onnxruntime", "--deploy", deploy, "--weights", onnx_file,
                "--size", "48x32", "--repeat", "2", "--ort-threads", "1", "--ort-opt", "basic",
                "--ort-arena", "0", "--ort-spin", "1")
    assert len(r["forward_s"]) == 2 and r["forward_median_s"] > 0 and r["peak_rss_mb"] > 50
    layer = _worker("layer", "--backend", "onnxruntime", "--layer", "8,8,3,16,16", "--repeat", "2")
    assert layer["layer"] == "3x3 8->8 @16x16" and layer["gflops"] > 0
    proc = subprocess.run([sys.executable, "-m", "benchmarks.worker", "forward", "--backend",
                           "onnxruntime", "--deploy", deploy, "--weights", onnx_file,
                           "--ort-opt", "fastest"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2 and "invalid choice: 'fastest'" in proc.stderr


def test_report_shows_onnxruntime_beside_the_others():
    res = _fake_result()
    res["machine"]["onnxruntime"] = "1.26.0"
    res["levers"].update({"no memory arena": {}, "graph opt basic": {}})
    base = dict(res["forward"][0], export_s=None)
    res["forward"] += [
        dict(base, backend="opencv", lever="default", forward_median_s=0.2, gflops=125.0,
             peak_rss_mb=400, blas_core=None),
        dict(base, backend="onnxruntime", lever="default", forward_median_s=0.1, gflops=250.0,
             peak_rss_mb=300, blas_core=None, export_s=0.41),
        dict(base, backend="onnxruntime", lever="no memory arena", forward_median_s=0.125,
             gflops=200.0, peak_rss_mb=240, blas_core=None, export_s=0.41)]
    res["layers"].append(dict(layer="3x3", backend="onnxruntime", lever="default", median_s=0.005,
                              gflops=500.0))
    text = bench.markdown(res)
    assert "ONNX Runtime 1.26.0" in text
    assert "| mrfnet | 256x256 | onnxruntime | default | - | 0.30 | 0.100 | 250.0 | 50% | 300 |" in text
    assert ("- MRFNet 256x256, ONNX Runtime vs OpenCV dnn: 2.00x the speed, 0.75x the peak memory "
            "(0.200 -> 0.100 s, 400 -> 300 MB)") in text
    assert "- MRFNet 256x256, ONNX Runtime vs pycaffe (this project's build): 2.50x the speed" in text
    assert "- ONNX Runtime MRFNet 256x256, memory arena off vs on: 0.80x the speed" in text
    assert "mrfnet 0.41 s" in text and "**no memory arena**" in text
