"""`mrfnet bench` (what `make bench` runs): speed and memory figures from one run on this machine.

Benchmarks, not tests: the machine is shared and noisy, so every figure is measured in the same
run as its reference (the best single-layer GFLOP/s of each backend is the practical limit the
whole net is compared with), and levers are compared as ratios within the run. Each measurement
is a fresh subprocess (evaluation.bench_worker / solver.measure), so memory peaks belong to it and
process-wide levers (BLAS threads, OpenCV threads) can differ between measurements.

Writes OUT/benchmarks.md and OUT/benchmarks.json.
"""
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LAYERS = ["256,256,3,64,64", "64,64,3,128,128", "32,32,3,256,256", "96,32,3,256,256"]
# (variant, WIDTHxHEIGHT, repeats)
FORWARDS = [("mrfnet", "256x256", 5), ("lwrefinenet", "256x256", 5), ("refinenet", "256x256", 5),
            ("rcrefinenet", "256x256", 5), ("mrfnet", "1280x720", 3)]
# lever name -> (environment additions, OpenCV threads)
LEVERS = {"default": ({}, None), "1 thread": ({"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}, 1)}


def add_arguments(p):
    p.add_argument("--out", default="docs", help="folder for benchmarks.md/.json (default docs)")
    p.add_argument("--quick", action="store_true",
                   help="skip the batch-16 x 256x256 training measurement and the 1280x720 forwards")


def _say(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def _worker(args, env_extra=None, timeout=3600):
    env = dict(os.environ, GLOG_minloglevel="2", **(env_extra or {}))
    proc = subprocess.run([sys.executable, "-m", "evaluation.bench_worker", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
        raise RuntimeError(f"bench_worker {' '.join(args)} failed:\n{tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _model(variant, workdir):
    """The deploy net and weights to time: the shipped model if there is one, else random ones."""
    from evaluation.bench_worker import random_weights
    from inference.models import resolve_model
    try:
        return (*resolve_model(variant), "shipped")
    except (FileNotFoundError, ValueError):
        deploy = Path("models") / variant / "deploy.prototxt"
        weights = Path(workdir) / f"{variant}_random.caffemodel"
        if not weights.exists():
            random_weights(deploy, weights)
        return str(deploy), str(weights), "random (timing does not depend on values)"


def _macs(variant, size):
    from prototxt_gen.summary import variant_stats
    w, h = (int(v) for v in size.split("x"))
    stats = variant_stats(variant, sizes=((w, h),))
    return stats["macs"][(w, h)], stats["params"]


def measure(quick=False):
    from data_prep.bench import measure_convert, measure_writers
    from solver.measure import time_training

    res = {"machine": _machine(), "started": time.strftime("%Y-%m-%d %H:%M:%S"), "quick": quick}
    res["layers"] = []
    for backend in ("caffe", "opencv"):
        for lever, (env, cv_threads) in LEVERS.items():
            for layer in LAYERS:
                extra = ["--cv-threads", str(cv_threads)] if cv_threads and backend == "opencv" else []
                r = _worker(["layer", "--backend", backend, "--layer", layer, "--repeat", "5", *extra], env)
                r.update(backend=backend, lever=lever)
                res["layers"].append(r)
                _say(f"layer {r['layer']} {backend} [{lever}]: {r['gflops']:.1f} GFLOP/s")
    res["forward"] = []
    with tempfile.TemporaryDirectory(prefix="mrfnet-bench-") as tmp:
        for variant, size, repeat in FORWARDS:
            if quick and size != "256x256":
                continue
            deploy, weights, origin = _model(variant, tmp)
            macs, params = _macs(variant, size)
            for backend in ("caffe", "opencv"):
                for lever, (env, cv_threads) in LEVERS.items():
                    if lever != "default" and (variant, size) != ("mrfnet", "256x256"):
                        continue
                    extra = ["--cv-threads", str(cv_threads)] if cv_threads and backend == "opencv" else []
                    r = _worker(["forward", "--backend", backend, "--deploy", deploy, "--weights",
                                 weights, "--size", size, "--repeat", str(repeat), *extra], env)
                    r.update(variant=variant, size=size, backend=backend, lever=lever, macs=macs,
                             params=params, weights=origin,
                             gflops=2 * macs / r["forward_median_s"] / 1e9)
                    res["forward"].append(r)
                    _say(f"forward {variant} {size} {backend} [{lever}]: load {r['load_s']:.2f} s, "
                         f"median {r['forward_median_s']:.3f} s, {r['gflops']:.1f} GFLOP/s, "
                         f"peak RSS {r['peak_rss_mb']:.0f} MB")
    res["training"] = []
    configs = [("demo setting", 8, 64, 10)] + ([] if quick else [("paper setting", 16, 256, 2)])
    for label, batch, crop, iters in configs:
        r = time_training("mrfnet", batch, crop, iters=iters)
        r.update(label=label, batch=batch, crop=crop)
        res["training"].append(r)
        _say(f"training mrfnet batch {batch} x {crop}x{crop}: {r['seconds_per_iter']:.2f} s/iter, "
             f"peak RSS {r['peak_rss_mb']:.0f} MB")
    _say("data conversion")
    res["data"] = {"writers": measure_writers(patches=96, crop=256),
                   "convert": measure_convert(crops=8, crop=256)}
    res["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    return res


def _machine():
    import cv2
    import numpy
    cpu = "?"
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": numpy.__version__, "opencv": cv2.__version__,
            "blas": "OpenBLAS (Debian libopenblas0-pthread)",
            "env": {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS",
                                                "OMP_NUM_THREADS") if k in os.environ}}


def markdown(res):
    m = res["machine"]
    best = {}
    for r in res["layers"]:
        best[(r["backend"], r["lever"])] = max(best.get((r["backend"], r["lever"]), 0), r["gflops"])
    lines = ["# Benchmarks", "",
             f"One run of `make bench` ({res['started']} to {res['finished']}) on {m['cpu']}, "
             f"{m['cores']} cores, CPU only; Python {m['python']}, numpy {m['numpy']}, OpenCV {m['opencv']}, "
             f"Caffe with {m['blas']}. The machine is shared: compare ratios within this run, "
             "not absolute times across runs. Raw numbers: `benchmarks.json`.", "",
             "## Practical limit: one convolution layer alone (batch 1, fp32, median of 5)", "",
             "| layer | backend | lever | ms | GFLOP/s |", "|---|---|---|---|---|"]
    for r in res["layers"]:
        lines.append(f"| {r['layer']} | {r['backend']} | {r['lever']} | {1000 * r['median_s']:.1f} | "
                     f"{r['gflops']:.1f} |")
    lines += ["", "## Deploy forward (batch 1, after one warm-up; median)", "",
              "Model load (prototxt + caffemodel) is timed apart from the forward. GFLOP/s = "
              "multiply-adds x 2 / forward time; 'of limit' compares it with the best single layer "
              "of the same backend and lever in this run.", "",
              "| variant | size | backend | lever | load s | forward s | GFLOP/s | of limit | peak RSS MB |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in res["forward"]:
        limit = best.get((r["backend"], r["lever"]), float("nan"))
        lines.append(f"| {r['variant']} | {r['size']} | {r['backend']} | {r['lever']} | {r['load_s']:.2f} | "
                     f"{r['forward_median_s']:.3f} | {r['gflops']:.1f} | {r['gflops'] / limit:.0%} | "
                     f"{r['peak_rss_mb']:.0f} |")
    weights = sorted({r["weights"] for r in res["forward"]})
    lines += ["", f"Weights timed: {', '.join(weights)}.", "",
              "## Training (MRFNet, 4 paths, pycaffe Adam step, Python loss; fresh process)", "",
              "| setting | batch | crop | s/iteration | peak RSS MB |", "|---|---|---|---|---|"]
    for r in res["training"]:
        lines.append(f"| {r['label']} | {r['batch']} | {r['crop']}x{r['crop']} | "
                     f"{r['seconds_per_iter']:.2f} | {r['peak_rss_mb']:.0f} |")
    d = res["data"]
    lines += ["", "## Data conversion (256x256 patches)", "",
              "| stage | LMDB patches/s | HDF5 patches/s | LMDB bytes/patch | HDF5 bytes/patch |",
              "|---|---|---|---|---|",
              f"| writer alone | {d['writers']['lmdb']['patches_per_s']} | {d['writers']['hdf5']['patches_per_s']} | "
              f"{d['writers']['lmdb']['bytes_per_patch']} | {d['writers']['hdf5']['bytes_per_patch']} |",
              f"| render (authors' blur) + write, 2 workers | {d['convert']['lmdb']['patches_per_s']} | "
              f"{d['convert']['hdf5']['patches_per_s']} | | |", ""]
    return "\n".join(lines)


def run(args):
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res = measure(quick=args.quick)
    tmp = out / ".benchmarks.json.tmp"
    tmp.write_text(json.dumps(res, indent=1, default=str) + "\n")
    os.replace(tmp, out / "benchmarks.json")
    tmp = out / ".benchmarks.md.tmp"
    tmp.write_text(markdown(res))
    os.replace(tmp, out / "benchmarks.md")
    print(f"bench: wrote {out / 'benchmarks.md'} and {out / 'benchmarks.json'}")
    return 0
