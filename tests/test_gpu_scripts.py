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
    r = subprocess.run([sys.executable, str(TOOLS / "gpu" / "summarize.py"), "--rate", str(tmp_path / "train.log")],
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "0.02"     # the device script's first-run rate


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


@pytest.fixture(scope="module")
def cpu_bundle(tmp_path_factory, venv_bin):
    """A bundle of the venv's CPU Caffe (make_bundle.sh --cpu), as the rehearsal uses."""
    bundle = tmp_path_factory.mktemp("cpu-bundle") / "bundle"
    r = subprocess.run([str(TOOLS / "gpu" / "make_bundle.sh"), "--cpu", str(bundle)],
                       env=dict(os.environ, VENV=str(venv_bin.parent)), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return bundle


def _device_script(bundle, out, *args):
    """run_on_device.sh --cpu with the rehearsal's tiny sizes; (process, run.log text)."""
    env = dict(os.environ, PYTHON=sys.executable)
    env.pop("OUT", None)
    env.pop("GLOG_minloglevel", None)
    r = subprocess.run(["bash", str(TOOLS / "gpu" / "run_on_device.sh"), "--cpu", "--bundle", str(bundle),
                        "--out", str(out), "--train-seconds", "8", "--crop", "32", "--batch", "2",
                        "--deploy-size", "64x48", "--time-iters", "1", "--workers", "1", *args],
                       env=env, capture_output=True, text=True, timeout=180)
    run_log = (out / "run.log").read_text() if (out / "run.log").exists() else ""
    return r, run_log


def test_device_script_rehearsal_on_cpu(tmp_path, cpu_bundle, repo_root):
    """tools/gpu/run_on_device.sh end to end on the CPU (what `make gpu-rehearsal` runs first): a
    bundle of the venv's CPU Caffe with its shared libraries, the bundled photos rendered by the
    project's converter, nets from its generators, `caffe train` from the shipped weights stopped by
    the time budget with a snapshot, `caffe time` of the deploy net, the summary; the snapshot is
    an MRFNet that the deploy net loads."""
    bundle = cpu_bundle
    manifest = (bundle / "MANIFEST.txt").read_text()
    assert "CPU_ONLY := 1" in manifest and (bundle / "bin" / "caffe.bin").is_file()
    assert (bundle / "python" / "caffe" / "proto" / "caffe_pb2.py").is_file()
    assert (bundle / "python" / "caffe" / "net_spec.py").is_file()
    assert not any(p.name.startswith(("libc.so", "libcudart")) for p in (bundle / "lib").iterdir())
    out = tmp_path / "out"
    r, run_log = _device_script(bundle, out, "--crops", "1", "--photo-size", "128")
    assert r.returncode == 0, f"{r.stderr[-3000:]}\n{run_log[-3000:]}"
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


def _tiles(tmp_path, exclude):
    """Tiles as `make gpu-rehearsal` makes them: the bundled training photos (mrfnet pairs' sharp/),
    through tools/gpu/prep_tiles.py at 64x64, leaving out the names of `exclude`."""
    photos = tmp_path / "photos"
    r = subprocess.run([sys.executable, "-m", "mrfnet.cli", "pairs", "--bundled", "train", "--out", str(photos)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    tiles = tmp_path / "tiles"
    r = subprocess.run([sys.executable, str(TOOLS / "gpu" / "prep_tiles.py"), "--images", str(photos / "sharp"),
                        "--out", str(tiles), "--size", "64", "--max-mib", "1", "--exclude", str(exclude)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return tiles, r.stdout


def test_prep_tiles_never_copies_heldout_and_fits_the_limit(tmp_path):
    """Held-out names (matched by stem: a .png copy of a listed .jpg too) never travel; when not
    all tiles fit, the subset keeps the classes even; sizes are the converter's."""
    import cv2
    import numpy as np
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for cls in ("set_aGrass", "set_bField"):
        for i in range(6):
            cv2.imwrite(str(images / f"{cls}_{i:03d}.png"), rng.integers(0, 256, (40, 48, 3), dtype=np.uint8))
    exclude = tmp_path / "heldout.txt"
    exclude.write_text("# held out\nset_aGrass_001.jpg\nset_bField_004.png\nnot_here.jpg\n")
    run = lambda *a: subprocess.run([sys.executable, str(TOOLS / "gpu" / "prep_tiles.py"), "--images", str(images),
                                     "--exclude", str(exclude), "--size", "32", *a], capture_output=True, text=True)
    out = tmp_path / "all"
    r = run("--out", str(out), "--format", "png", "--max-mib", "10")
    assert r.returncode == 0, r.stderr
    names = sorted(p.name for p in out.glob("*.png"))
    assert len(names) == 10 and "set_aGrass_001.png" not in names and "set_bField_004.png" not in names
    assert "10 of 10 training tiles (2 of 12 left out" in r.stdout
    assert cv2.imread(str(out / names[0])).shape == (32, 32, 3)
    one = (out / names[0]).stat().st_size
    some = tmp_path / "some"
    r = run("--out", str(some), "--format", "png", "--max-mib", str(4.5 * one / 2 ** 20))
    assert r.returncode == 0, r.stderr
    kept = [p.name for p in some.glob("*.png")]
    assert 3 <= len(kept) <= 5 and abs(sum(n.startswith("set_a") for n in kept) * 2 - len(kept)) <= 1
    assert (some / "TILES.txt").is_file()
    r = run("--out", str(images), "--max-mib", "10")       # never writes over a folder it did not make
    assert r.returncode == 2 and "was not written by this script" in r.stderr


def test_device_script_tiles_from_weights_on_cpu(tmp_path, cpu_bundle, repo_root):
    """The GPU run's new path on the CPU (what `make gpu-rehearsal` runs second): carried tiles
    rendered there with `mrfnet convert --source sharp`, `caffe train -weights` the shipped model,
    poly lr with the last iteration set from a first run's measured rate, then resumed from its
    solver state; the weights that come back are the shipped ones, moved a little."""
    exclude = tmp_path / "heldout.txt"
    exclude.write_text("coins.png\n")
    tiles, prep_out = _tiles(tmp_path, exclude)
    assert "9 of 9 training tiles (1 of 10 left out" in prep_out and not (tiles / "coins.jpg").exists()
    out = tmp_path / "out"
    r, run_log = _device_script(cpu_bundle, out, "--tiles", str(tiles), "--exclude", str(exclude),
                                "--crops", "2", "--photo-size", "64", "--lr-policy", "poly", "--calib-iters", "4")
    assert r.returncode == 0, f"{r.stderr[-3000:]}\n{run_log[-3000:]}"
    assert "train: 18 patches of 32x32" in run_log                  # 9 tiles x 2 blur draws
    shipped = repo_root / "models" / "mrfnet" / "mrfnet.caffemodel"
    assert f"Finetuning from {shipped}" in run_log                  # the first run starts from it
    last = int(re.search(r"first run: [\d.]+s per iteration, \d+ s in all; poly to 0 at iteration (\d+)",
                         run_log).group(1))
    assert last > 4
    train_log = (out / "train.log").read_text()
    assert "Resuming from " in train_log and "stage1_iter_4.solverstate" in train_log
    lrs = [float(x) for x in re.findall(r"Iteration \d+, lr = (\S+)", train_log)]
    assert lrs and lrs[0] < 1e-4 and lrs == sorted(lrs, reverse=True)   # poly: falling from below base_lr
    s = json.loads((out / "summary.json").read_text())
    assert 4 < s["train"]["iterations"] <= last and "poly" in s["setting"] and "tiles" in s["setting"]
    import caffe
    caffe.set_mode_cpu()
    deploy = str(repo_root / "models" / "mrfnet" / "deploy.prototxt")
    trained = caffe.Net(deploy, str(out / "mrfnet_gpu.caffemodel"), caffe.TEST).params["Conv1"][0].data
    start = caffe.Net(deploy, str(shipped), caffe.TEST).params["Conv1"][0].data
    moved = abs(trained - start).max()
    assert 0 < moved < 0.02        # Adam at lr <= 1e-4 moves a weight about lr per step


def test_device_script_refuses_heldout_tiles(tmp_path, cpu_bundle):
    """A tiles folder holding a held-out name stops the run before it renders anything."""
    tiles = tmp_path / "tiles"
    tiles.mkdir()
    (tiles / "rsscn7_aGrass_a009.png").write_bytes(b"")          # in models/mrfnet/heldout_aerial.txt as .jpg
    r, run_log = _device_script(cpu_bundle, tmp_path / "out", "--tiles", str(tiles))
    assert r.returncode == 1 and "holds names of heldout_aerial.txt (rsscn7_aGrass_a009" in run_log
