"""The CUDA build, checked on this machine when one has been built here.

Runs only when a CUDA build exists: `make caffe-gpu` (= `MRFNET_GPU=1 make caffe`) records it in
the venv's `caffe-gpu-dir`, and `make gpu-bundle` writes `.gpu/caffe-gpu-bundle.tar.xz`. CI does
not build either (README "GPU build": too long for CI's budget on 2 cores), so on CI these tests
are skipped, with that reason; the CPU Caffe tests never skip. On a machine without a GPU it checks
what a user without one sees: a clear message, exit status 1, no glog "Check failed" crash; with
a GPU, that device_query sees it."""
import json
import os
import subprocess
import sys
import sysconfig
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV = Path(sys.executable).parent.parent
NO_GPU = "asks for an NVIDIA GPU, but CUDA finds none"


@pytest.fixture(scope="module")
def gpu_build():
    record = VENV / "caffe-gpu-dir"
    if not record.is_file():
        pytest.skip("no CUDA build here (`make caffe-gpu` builds one; CI does not)")
    build = Path(record.read_text().strip())
    if not (build / "BUILD_OK").is_file():
        pytest.skip(f"the recorded CUDA build {build} is gone")
    return build


def _gpu_present():
    return Path("/dev/nvidia0").exists()


def _caffe(build, *args, timeout=120):
    env = dict(os.environ, GLOG_logtostderr="1")
    env.pop("GLOG_minloglevel", None)   # conftest quiets Caffe; these tests read its log
    env["LD_LIBRARY_PATH"] = sysconfig.get_config_var("LIBDIR") + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    return subprocess.run([str(build / ".temp_release" / "tools" / "caffe.bin"), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_links_the_cuda_libraries_of_the_cache(gpu_build):
    ldd = subprocess.run(["ldd", str(gpu_build / ".temp_release" / "lib" / "libcaffe.so.1.0.0-rc3")],
                         capture_output=True, text=True).stdout
    assert "not found" not in ldd, ldd
    for lib in ("libcudart.so", "libcublas.so", "libcurand.so"):
        assert lib in ldd
    assert "libcudnn" not in ldd and "libnccl" not in ldd


@pytest.mark.parametrize("command", [
    ["device_query", "-gpu", "0"],
    ["train", "-solver", "models/mrfnet/solver.prototxt", "-gpu", "0"],
    ["time", "-model", "models/mrfnet/deploy.prototxt", "-gpu", "all"],
])
def test_without_a_gpu_a_clear_message(gpu_build, command):
    if _gpu_present():
        pytest.skip("this machine has a GPU (test_device_query_with_a_gpu checks it)")
    r = _caffe(gpu_build, *command)
    assert r.returncode == 1, r.stderr[-2000:]
    assert NO_GPU in r.stderr and "leave out -gpu" in r.stderr
    assert "Check failed" not in r.stderr and "stack trace" not in r.stderr


def test_a_gpu_id_that_does_not_exist(gpu_build):
    if not _gpu_present():
        pytest.skip("needs a GPU (without one, every id gets the no-GPU message)")
    r = _caffe(gpu_build, "device_query", "-gpu", "0,99")
    assert r.returncode == 1 and "there is no GPU 99" in r.stderr


def test_device_query_with_a_gpu(gpu_build):
    if not _gpu_present():
        pytest.skip("no GPU here")
    r = _caffe(gpu_build, "device_query", "-gpu", "0")
    assert r.returncode == 0 and "Device id:" in r.stderr


def test_cpu_mode_trains(gpu_build, tmp_path):
    """Without -gpu, the CUDA build trains on the CPU of a machine without a driver (a Data
    layer's prefetch thread asked CUDA for a device before fix_sources_cuda.sh fix 6), through
    the device script's CPU path with a bundle of this build."""
    bundle = tmp_path / "bundle"
    r = subprocess.run([str(REPO / "tools" / "gpu" / "make_bundle.sh"), "--caffe-dir", str(gpu_build), str(bundle)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "libcudart.so.13" in (bundle / "MANIFEST.txt").read_text()
    env = dict(os.environ, PYTHON=sys.executable)
    env.pop("OUT", None)
    r = subprocess.run(["bash", str(REPO / "tools" / "gpu" / "run_on_device.sh"), "--cpu", "--bundle", str(bundle),
                        "--out", str(tmp_path / "out"), "--train-seconds", "6", "--crop", "32", "--batch", "2",
                        "--crops", "1", "--photo-size", "128", "--deploy-size", "64x48", "--time-iters", "1"],
                       env=env, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert s["train"]["iterations"] >= 1 and s["time"]["forward_ms"] > 0


def test_device_bundle():
    bundle = REPO / ".gpu" / "caffe-gpu-bundle.tar.xz"
    if not bundle.is_file():
        pytest.skip("no device bundle here (`make gpu-bundle` makes one; CI does not)")
    assert bundle.stat().st_size < 40 * 2**20     # travels with the repository (64 MiB a call)
    with tarfile.open(bundle) as tar:
        names = tar.getnames()
        manifest = tar.extractfile("caffe-bundle/MANIFEST.txt").read().decode()
    assert "code=sm_90" in manifest and "USE_OPENCV := 0" in manifest
    assert "libcudart.so.13" in manifest and "libcublas.so.13" in manifest
    assert "caffe-bundle/bin/caffe.bin" in names
    assert "caffe-bundle/python/caffe/net_spec.py" in names        # the net generators run there
    assert any(n.startswith("caffe-bundle/wheels/lmdb-") and n.endswith("cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl")
               for n in names)
    libs = [n for n in names if n.startswith("caffe-bundle/lib/")]
    assert not any("opencv" in n or "libcudart" in n or "libcublas" in n or "libpython" in n for n in libs)
