"""The GPU tooling that runs without a GPU: the CUDA-only source fixes apply to the pinned tree
(with this checkout's CPU fixes and patches before them), the pins are pinned, the device run's
summary reads Caffe's logs, and the device script itself runs end to end on the CPU with a bundle
of the CPU build (the rehearsal of docs/gpu.md). None of this needs the GPU build."""
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TOOLS = REPO / "tools"
SDIST = "brocolli-caffe-9.0.2"


def _sdist():
    cache = Path(os.environ.get("MRFNET_CACHE", Path.home() / ".cache" / "mrfnet-caffe"))
    path = cache / "downloads" / f"{SDIST}.tar.gz"
    if not path.is_file():
        pytest.fail(f"{path} missing: `make caffe` downloads it before the tests run")
    return path


@pytest.fixture(scope="module")
def gpu_fixed_tree(tmp_path_factory):
    """The Caffe tree as a GPU build compiles it: fix_sources.sh, speedups.sh, fix_sources_cuda.sh."""
    root = tmp_path_factory.mktemp("tree")
    with tarfile.open(_sdist()) as tar:
        members = [m for m in tar.getmembers()
                   if m.name.split("/")[1:2] in (["tools"], ["src"], ["include"], ["python"], ["Makefile"])]
        tar.extractall(root, members=members)
    tree = root / SDIST
    for script in ("fix_sources.sh", "speedups.sh", "fix_sources_cuda.sh"):
        r = subprocess.run(["bash", str(TOOLS / "caffe" / script)], cwd=tree, capture_output=True, text=True)
        assert r.returncode == 0, f"{script} failed on the pinned tree:\n{r.stdout}\n{r.stderr}"
    return tree


def test_cuda_fixes_apply(gpu_fixed_tree):
    caffe_cpp = (gpu_fixed_tree / "tools" / "caffe.cpp").read_text()
    # the no-GPU message replaces the CUDA_CHECK crash, for every command that parses -gpu
    assert "static void get_gpus_unchecked(vector<int>* gpus)" in caffe_cpp
    assert "asks for an NVIDIA GPU, but CUDA finds none" in caffe_cpp
    assert caffe_cpp.count("get_gpus(&gpus);") == 4     # device_query, train, test, time
    # multi-GPU runs the tree's P2PSync; the NCCL class it named does not exist in this tree
    assert "caffe::P2PSync<float> sync(solver, NULL, solver->param());" in caffe_cpp
    assert "caffe::NCCL<float>" not in caffe_cpp
    assert "class P2PSync" in (gpu_fixed_tree / "include" / "caffe" / "parallel.hpp").read_text()
    assert "class NCCL" not in (gpu_fixed_tree / "include" / "caffe" / "parallel.hpp").read_text()
    common = (gpu_fixed_tree / "src" / "caffe" / "common.cpp").read_text()
    for field in ("clockRate", "deviceOverlap", "kernelExecTimeoutEnabled"):  # gone in CUDA 13
        assert f"prop.{field}" not in common


def test_cuda_wheels_are_pinned_with_hashes():
    lines = [l for l in (TOOLS / "caffe" / "cuda13-wheels.txt").read_text().splitlines()
             if l.strip() and not l.startswith("#")]
    names = set()
    for line in lines:
        assert re.fullmatch(r"[a-z0-9-]+==[0-9.]+ --hash=sha256:[0-9a-f]{64}", line), line
        names.add(line.split("==")[0])
    # the compiler (driver, front end, cicc, crt headers) and what Caffe links
    assert {"nvidia-cuda-nvcc", "nvidia-nvvm", "nvidia-cuda-crt", "nvidia-cuda-runtime",
            "nvidia-cublas", "nvidia-curand"} <= names
    device = (TOOLS / "gpu" / "device-wheels.txt").read_text()
    assert re.search(r"^lmdb==[0-9.]+ --hash=sha256:[0-9a-f]{64}$", device, re.M)


def _glog(t, msg, file="solver.cpp:231"):
    return f"I1130 {t} 4242 {file}] {msg}"   # glog 0.4; 0.6 writes I20261130 (the time log below)


def test_summary_reads_caffe_logs(tmp_path):
    (tmp_path / "train.log").write_text("\n".join([
        _glog("23:59:59.000000", "Iteration 0, loss = 0.30"),
        "    Train net output #0: loss1 = 0.1",
        _glog("23:59:59.500000", "Iteration 20, loss = 0.20"),
        _glog("23:59:59.900000", "Iteration 40, loss = 0.10"),
        _glog("23:59:59.950000", "Snapshotting to binary proto file /w/snap/mrfnet_gpu_iter_43.caffemodel",
              "sgd_solver.cpp:273"),
    ]) + "\n")
    (tmp_path / "time.log").write_text("\n".join([
        "I2026" + _glog("00:00:10.000000", "Average Forward pass: 51.25 ms.", "caffe.cpp:437")[1:],
        "I2026" + _glog("00:00:10.000000", "Average Backward pass: 120.5 ms.", "caffe.cpp:439")[1:],
        "I2026" + _glog("00:00:10.000000", "Average Forward-Backward: 172 ms.", "caffe.cpp:441")[1:],
    ]) + "\n")
    (tmp_path / "gpu_memory.csv").write_text(
        "# timestamp, memory.used [MiB], utilization.gpu [%]\n# start 100\n"
        "2026/11/30 23:59:57.000, 0, 0\n# train 101\n2026/11/30 23:59:58.000, 9000, 50\n"
        "2026/11/30 23:59:59.000, 12000, 100\n# time 103\n2026/11/30 00:00:09.000, 6000, 90\n")
    (tmp_path / "run.log").write_text("name, driver_version, memory.total [MiB], memory.used [MiB]\n"
                                      "NVIDIA H200, 580.159.04, 143771 MiB, 0 MiB\n")
    phases = tmp_path / "phases"
    phases.write_text("start 100\ndata 100\ntrain 101\ntrained 103\ntime 103\ntimed 104\n")
    r = subprocess.run([sys.executable, str(TOOLS / "gpu" / "summarize.py"), "--out", str(tmp_path), "--phases", str(phases),
                        "--setting", "batch=16"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["train"]["iterations"] == 43
    assert s["train"]["seconds_per_iteration"] == pytest.approx(0.4 / 20)   # from iteration 20 on
    assert s["train"]["loss_first"] == 0.30 and s["train"]["loss_last"] == 0.10
    assert s["time"] == {"forward_ms": 51.25, "backward_ms": 120.5, "forward_backward_ms": 172.0}
    assert s["gpu_memory"]["train"]["peak_mib"] == 12000 and s["gpu_memory"]["time"]["peak_mib"] == 6000
    assert s["gpu_memory"]["train"]["mean_utilization_pct"] == 75.0
    assert s["gpu"]["name"] == "NVIDIA H200"
    assert s["train"]["wall_seconds"] == 2
    assert "| seconds per iteration | 0.02 |" in (tmp_path / "summary.md").read_text()


def test_cuda_libraries_found_in_python_packages(tmp_path):
    """The lent machine's CUDA 13 wheels lay their libraries out as nvidia/cu13/lib (cudart,
    cuBLAS, cuRAND) and nvidia/nccl/lib; a missing one is named."""
    site = tmp_path / "site"
    for rel in ("nvidia/cu13/lib/libcudart.so.13", "nvidia/cu13/lib/libcublas.so.13",
                "nvidia/cu13/lib/libcublasLt.so.13", "nvidia/cu13/lib/libcurand.so.10"):
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_bytes(b"")
    script = str(TOOLS / "gpu" / "find_cuda_libs.py")
    env = dict(os.environ, PYTHONPATH=str(site), CUDA_HOME=str(tmp_path / "no-toolkit"))
    r = subprocess.run([sys.executable, script, "libcudart.so.13", "libcublas.so.13", "libcublasLt.so.13",
                        "libcurand.so.10", "libcuda.so.1"], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(site / "nvidia" / "cu13" / "lib")
    r = subprocess.run([sys.executable, script, "libcudart.so.13", "libnccl.so.2"], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 1 and "missing CUDA libraries: libnccl.so.2" in r.stderr


def test_device_script_rehearsal_on_cpu(tmp_path, venv_bin, repo_root):
    """tools/gpu/run_on_device.sh end to end on the CPU (what `make gpu-rehearsal` runs): a bundle
    of the venv's CPU Caffe with its shared libraries, data rendered by the project's converter,
    `caffe train` stopped by the time budget with a snapshot, `caffe time` of the deploy net,
    the summary; the snapshot is an MRFNet that the deploy net loads."""
    bundle = tmp_path / "bundle"
    r = subprocess.run([str(TOOLS / "gpu" / "make_bundle.sh"), "--cpu", str(bundle)],
                       env=dict(os.environ, VENV=str(venv_bin.parent)), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    manifest = (bundle / "MANIFEST.txt").read_text()
    assert "CPU_ONLY := 1" in manifest and (bundle / "bin" / "caffe.bin").is_file()
    assert (bundle / "python" / "caffe" / "proto" / "caffe_pb2.py").is_file()
    assert not any(p.name.startswith(("libc.so", "libcudart")) for p in (bundle / "lib").iterdir())
    out = tmp_path / "out"
    env = dict(os.environ, PYTHON=sys.executable)
    env.pop("OUT", None)
    env.pop("GLOG_minloglevel", None)
    r = subprocess.run(["bash", str(TOOLS / "gpu" / "run_on_device.sh"), "--cpu", "--bundle", str(bundle),
                        "--out", str(out), "--train-seconds", "8", "--crop", "32", "--batch", "2",
                        "--crops", "1", "--photo-size", "128", "--deploy-size", "64x48", "--time-iters", "1"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"{r.stderr[-3000:]}\n{(out / 'run.log').read_text()[-3000:] if (out / 'run.log').exists() else ''}"
    files = sorted(p.name for p in out.iterdir())
    assert files == ["mrfnet_gpu.caffemodel", "run.log", "summary.json", "summary.md", "time.log", "train.log"]
    s = json.loads((out / "summary.json").read_text())
    assert s["mode"] == "cpu" and s["train"]["iterations"] >= 1
    assert s["train"]["seconds_per_iteration"] > 0 and s["time"]["forward_ms"] > 0
    assert "wrote " in (out / "run.log").read_text()    # the converter's last line
    import caffe
    caffe.set_mode_cpu()
    net = caffe.Net(str(repo_root / "models" / "mrfnet" / "deploy.prototxt"), str(out / "mrfnet_gpu.caffemodel"),
                    caffe.TEST)
    assert net.params["Conv1"][0].data.std() > 0
