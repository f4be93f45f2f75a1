"""Tiny real deploy nets with random weights for the inference/eval tests (helpers + own checks).

No trained weights are needed: the nets come from prototxt_gen (P = 2 unless stated); weights
are drawn here (LeCun-normal, std 1/sqrt(fan-in), so outputs stay within about [-3, 3]) and
saved with pycaffe's net.save(), as a trained model would be.
Other test modules import `make_model` from here.
"""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import caffe

from prototxt_gen import nets

REPO = Path(__file__).resolve().parents[1]


def make_model(folder, variant="mrfnet", paths=2, seed=0):
    """(deploy.prototxt, weights.caffemodel) in `folder` for a randomly initialised net."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    deploy = folder / f"{variant}_p{paths}_deploy.prototxt"
    weights = folder / f"{variant}_p{paths}_s{seed}.caffemodel"
    if not weights.exists():
        deploy.write_text(nets.to_text(nets.deploy_net(variant, paths, 32, 32)))
        net = caffe.Net(str(deploy), caffe.TEST)
        rng = np.random.default_rng(seed)
        for blobs in net.params.values():
            w = blobs[0].data
            w[...] = rng.standard_normal(w.shape) * np.sqrt(1.0 / np.prod(w.shape[1:]))
            for b in blobs[1:]:
                b.data[...] = rng.standard_normal(b.data.shape) * 0.01
        net.save(str(weights))
    return deploy, weights


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("models"))


def test_stride_comes_from_the_nets_blob_shapes(tmp_path):
    from inference.backends import load

    for paths, stride in ((1, 1), (2, 2), (3, 4)):
        deploy, weights = make_model(tmp_path, paths=paths)
        for backend in ("caffe", "opencv"):
            assert load(deploy, weights, backend).stride == stride, (paths, backend)


_PEAK_PROBE = """
import os, sys
os.environ["GLOG_minloglevel"] = "2"
import numpy as np
from inference.backends import load

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024

b = load(sys.argv[1], sys.argv[2], sys.argv[3])
side = int(sys.argv[5])
if sys.argv[4] == "estimate":           # what the tile planner will use, from a fresh process
    print(b.memory_model()[1] * side * side)
else:                                   # a real forward's peak growth, from a fresh process
    b.forward(np.zeros((1, 3, 16, 16), np.float32))
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = status("VmRSS")
    b.forward(np.random.default_rng(0).random((1, 3, side, side), dtype=np.float32))
    print(status("VmHWM") - before)
"""


def _probe(*args):
    proc = subprocess.run([sys.executable, "-c", _PEAK_PROBE, *map(str, args)],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return float(proc.stdout.split()[-1])


@pytest.mark.parametrize("paths,side", [(2, 384), (4, 512)])
def test_caffe_memory_model_predicts_a_real_forwards_peak(tmp_path, paths, side):
    """The tile planner trusts memory_model() (taken at 256x256, with blob memory reuse);
    check it against the peak growth of a forward at another size in a fresh process."""
    deploy, weights = make_model(tmp_path, paths=paths)
    estimate = _probe(deploy, weights, "caffe", "estimate", side)
    measured = _probe(deploy, weights, "caffe", "measure", side)
    assert measured > 30e6
    assert 0.85 * measured <= estimate <= 1.15 * measured, (estimate, measured)


@pytest.mark.parametrize("variant", ["mrfnet", "refinenet"])
def test_opencv_memory_model_covers_a_real_forwards_peak(tmp_path, variant):
    """The OpenCV estimate (measured at 256x256) must cover the peak growth of a forward at
    512x512 with the tile planner's safety factor, and not be far above it."""
    from inference.tiling import MEM_SAFETY
    deploy, weights = make_model(tmp_path, variant=variant, paths=4)
    estimate = _probe(deploy, weights, "opencv", "estimate", 512)
    measured = _probe(deploy, weights, "opencv", "measure", 512)
    assert measured > 50e6
    assert measured <= MEM_SAFETY * estimate, (estimate, measured)
    assert estimate <= 2.0 * measured, (estimate, measured)


def test_opencv_memory_model_is_measured_once_and_not_below_the_live_blobs(tmp_path):
    """Measured in a fresh process, so earlier work in this one (here a larger forward whose
    memory the allocator keeps) cannot shrink it; at least the blobs alive at one time."""
    from inference.backends import load
    deploy, weights = make_model(tmp_path, paths=4)
    b = load(deploy, weights, "opencv")
    b.forward(np.zeros((1, 3, 512, 512), np.float32))
    fixed, per_pixel = b.memory_model()
    assert per_pixel * 256 * 256 >= b._live_blob_peak([1, 3, 256, 256])
    _, all_blobs = b.net.getMemoryConsumption([1, 3, 256, 256])
    assert per_pixel < 0.5 * all_blobs / 256 / 256  # the measurement, not the fallback
    assert b.memory_model() == (fixed, per_pixel)   # measured once, then kept


def test_a_gopro_frame_fits_one_opencv_forward_under_the_default_limit(tmp_path):
    from inference.backends import load
    from inference.tiling import DEFAULT_MEM_LIMIT_MB, plan_for
    deploy, weights = make_model(tmp_path, paths=4)
    plan = plan_for(load(deploy, weights, "opencv"), 720, 1280, DEFAULT_MEM_LIMIT_MB)
    assert not plan.tiled, plan


def test_memprobe_says_none_when_it_cannot_measure(tmp_path):
    from mrfnet.sysmem import measure_forward
    assert measure_forward(tmp_path / "missing.prototxt", tmp_path / "missing.caffemodel") is None
