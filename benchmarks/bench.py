"""Speed and memory figures from one run on this machine (`mrfnet bench`, what `make bench` runs).

Benchmarks, not tests: the machine is shared and noisy, so every figure is measured in the same
run as its reference (the best single-layer GFLOP/s of each backend is the practical limit the
whole net is compared with), and levers are compared as ratios within the run. Each measurement
is a fresh subprocess (benchmarks.worker / solver.measure), so memory peaks belong to it and
process-wide levers (BLAS threads and kernels, OpenCV options, which Caffe build) can differ
between measurements.

Backends: pycaffe, OpenCV dnn and ONNX Runtime (on the net's ONNX export, made once per model
before its rows and timed apart). Video rows (benchmarks.video): `mrfnet deblur`'s
streamed video path against pure inference of the same frames, and the self-ensemble's factor.
Levers (`levers()`): threads (BLAS, OpenCV, ONNX Runtime); OpenBLAS's own CPU detection where
OPENBLAS_CORETYPE pins it; OpenCV's Winograd convolutions; pycaffe without blob memory reuse
(MRFNET_BLOB_REUSE=0); ONNX Runtime's graph optimisation level, memory arena and idle thread
spinning; and, with
--baseline-caffe DIR (`make bench` builds one with MRFNET_CAFFE_PATCHES=0), the stock Caffe
build without this project's patches, for before/after.

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

from benchmarks.int8 import markdown as int8_markdown
from benchmarks.video import markdown as video_markdown

LAYERS = ["256,256,3,64,64", "64,64,3,128,128", "32,32,3,256,256", "96,32,3,256,256"]
# (variant, WIDTHxHEIGHT, repeats, levers beyond "default")
FORWARDS = [("mrfnet", "256x256", 5, "all"), ("lwrefinenet", "256x256", 5, ()),
            ("refinenet", "256x256", 5, ()), ("rcrefinenet", "256x256", 5, ()),
            ("mrfnet", "1280x720", 3, ("stock Caffe", "patches 0001-0003", "no blob reuse",
                                       "no memory arena", "int8"))]
WORKERS_LEVER = "--workers 2"
# Training (label, batch, crop, timed steps, levers beyond "default"): the demo's setting with
# every Caffe lever, the paper's 16 x 256x256 against the two earlier builds.
TRAINING = [("demo setting", 8, 64, 10, ("stock Caffe", "patches 0001-0003", "1 thread",
                                          "pthread OpenBLAS", "no batch-wide GEMM",
                                          "OpenMP threads spin", WORKERS_LEVER)),
            ("paper setting", 16, 256, 2, ("stock Caffe", "patches 0001-0003", WORKERS_LEVER))]
# Debian's default OpenBLAS build; patch 0004 links libcaffe to the OpenMP build instead.
PTHREAD_OPENBLAS = "/usr/lib/x86_64-linux-gnu/openblas-pthread"
BACKENDS = ("caffe", "opencv", "onnxruntime")
PINNED_BLAS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def levers(baseline_caffe=None, environ=os.environ, before_caffe=None):
    """name -> {"backends", "env" (additions), "unset", "pythonpath", "library_path" (put first
    on LD_LIBRARY_PATH), "args" (worker options), "whole_net" (True: it changes whole nets, not
    one GEMM, so it has no single-layer rows), "training_only" (batch-1 forwards are the same)}."""
    out = {"default": {"backends": BACKENDS},
           "1 thread": {"backends": BACKENDS,
                        "env": {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
                        "args": {"opencv": ["--cv-threads", "1"],
                                 "onnxruntime": ["--ort-threads", "1"]}}}
    if environ.get("OPENBLAS_CORETYPE"):
        out["OpenBLAS detects CPU"] = {"backends": ("caffe",), "unset": PINNED_BLAS}
    out["Winograd off"] = {"backends": ("opencv",), "args": {"opencv": ["--cv-winograd", "0"]},
                           "whole_net": True}
    out["no blob reuse"] = {"backends": ("caffe",), "env": {"MRFNET_BLOB_REUSE": "0"},
                            "whole_net": True}
    for level in ("extended", "basic"):
        out[f"graph opt {level}"] = {"backends": ("onnxruntime",), "whole_net": True,
                                     "args": {"onnxruntime": ["--ort-opt", level]}}
    out["no memory arena"] = {"backends": ("onnxruntime",), "whole_net": True,
                              "args": {"onnxruntime": ["--ort-arena", "0"]}}
    out["thread spinning"] = {"backends": ("onnxruntime",), "whole_net": True,
                              "args": {"onnxruntime": ["--ort-spin", "1"]}}
    # the int8 model of `--precision int8` (benchmarks.int8; the CPU default where it has VNNI)
    out["int8"] = {"backends": ("onnxruntime",), "whole_net": True, "int8": True}
    # Caffe patch 0004's levers: the pthread OpenBLAS (two thread pools again), per-image GEMMs,
    # idle OpenMP threads spinning instead of sleeping.
    out["pthread OpenBLAS"] = {"backends": ("caffe",), "library_path": PTHREAD_OPENBLAS}
    out["no batch-wide GEMM"] = {"backends": ("caffe",), "whole_net": True, "training_only": True,
                                 "env": {"MRFNET_CONV_BATCH_COLUMNS": "0"}}
    out["OpenMP threads spin"] = {"backends": ("caffe",), "env": {"OMP_WAIT_POLICY": "ACTIVE"}}
    # `mrfnet train --workers 2` (solver/parallel.py): the batch split across two one-thread
    # processes, gradients averaged; peak memory is the sum of both processes
    out[WORKERS_LEVER] = {"backends": ("caffe",), "whole_net": True, "training_only": True,
                          "train_workers": 2}
    if baseline_caffe:
        out["stock Caffe"] = {"backends": ("caffe",), "whole_net": True,
                              "pythonpath": str(Path(baseline_caffe) / "python")}
    if before_caffe:
        out["patches 0001-0003"] = {"backends": ("caffe",), "whole_net": True,
                                    "pythonpath": str(Path(before_caffe) / "python")}
    return out


def lever_env(lever, environ=os.environ):
    """The environment of a measurement under `lever`."""
    env = {k: v for k, v in environ.items() if k not in lever.get("unset", ())}
    env.update(lever.get("env", {}))
    for key, var in (("pythonpath", "PYTHONPATH"), ("library_path", "LD_LIBRARY_PATH")):
        if lever.get(key):  # put first on the search path
            env[var] = os.pathsep.join(filter(None, [lever[key], env.get(var)]))
    env["GLOG_minloglevel"] = "2"
    return env


def _say(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def _worker(args, lever, backend="caffe", timeout=3600):
    args = [*args, *lever.get("args", {}).get(backend, [])]
    proc = subprocess.run([sys.executable, "-m", "benchmarks.worker", *args],
                          env=lever_env(lever), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
        raise RuntimeError(f"benchmarks.worker {' '.join(args)} failed:\n{tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _model(variant, workdir):
    """The deploy net and weights to time: the shipped model if there is one, else random ones."""
    from benchmarks.worker import random_weights
    from inference.models import resolve_model
    try:
        return (*resolve_model(variant), "shipped")
    except (FileNotFoundError, ValueError):
        deploy = Path("models") / variant / "deploy.prototxt"
        weights = Path(workdir) / f"{variant}_random.caffemodel"
        if not weights.exists():
            random_weights(deploy, weights)
        return str(deploy), str(weights), "random (timing does not depend on values)"


def _onnx_model(deploy, weights, workdir, variant, done):
    """The ONNX export the ONNX Runtime rows run (made once per variant; `done` keeps
    {variant: (path, seconds the export took)})."""
    from inference.onnx_export import export
    if variant not in done:
        t0 = time.perf_counter()
        path = export(deploy, weights, Path(workdir) / f"{variant}.onnx")
        done[variant] = (str(path), time.perf_counter() - t0)
        _say(f"export {variant} to ONNX: {done[variant][1]:.2f} s")
    return done[variant]


def _macs(variant, size):
    from prototxt_gen.summary import variant_stats
    w, h = (int(v) for v in size.split("x"))
    stats = variant_stats(variant, sizes=((w, h),))
    return stats["macs"][(w, h)], stats["params"]


def _layers(all_levers):
    rows = []
    for backend in BACKENDS:
        for name, lever in all_levers.items():
            if backend not in lever["backends"] or lever.get("whole_net"):
                continue
            for layer in LAYERS:
                r = _worker(["layer", "--backend", backend, "--layer", layer, "--repeat", "5"],
                            lever, backend)
                r.update(backend=backend, lever=name)
                rows.append(r)
                _say(f"layer {r['layer']} {backend} [{name}]: {r['gflops']:.1f} GFLOP/s")
    return rows


def _forwards(all_levers, quick, val=None):
    from benchmarks.int8 import int8_model, quality

    rows, profiles, exported, quantized, int8_quality = [], [], {}, {}, None
    with tempfile.TemporaryDirectory(prefix="mrfnet-bench-") as tmp:
        for variant, size, repeat, extra in FORWARDS:
            if quick and size != "256x256":
                continue
            deploy, weights, origin = _model(variant, tmp)
            macs, params = _macs(variant, size)
            for backend in BACKENDS:
                files, export_s = weights, None
                if backend == "onnxruntime":
                    files, export_s = _onnx_model(deploy, weights, tmp, variant, exported)
                for name, lever in all_levers.items():
                    if backend not in lever["backends"] or (
                            name != "default" and extra != "all" and name not in extra) or (
                            lever.get("training_only")):
                        continue
                    timed = files
                    if lever.get("int8"):
                        timed, took = int8_model(deploy, files, tmp, variant, quantized)
                        _say(f"int8 model of {variant}: {took:.1f} s")
                        if val and variant == "mrfnet" and int8_quality is None:
                            int8_quality = quality(deploy, files, timed, val)
                            _say(f"int8 quality on {val}: {int8_quality}")
                    r = _worker(["forward", "--backend", backend, "--deploy", deploy, "--weights",
                                 timed, "--size", size, "--repeat", str(repeat)], lever, backend)
                    r.update(variant=variant, size=size, backend=backend, lever=name, macs=macs,
                             params=params, weights=origin, export_s=export_s,
                             gflops=2 * macs / r["forward_median_s"] / 1e9)
                    rows.append(r)
                    _say(f"forward {variant} {size} {backend} [{name}]: load {r['load_s']:.2f} s, "
                         f"median {r['forward_median_s']:.3f} s, {r['gflops']:.1f} GFLOP/s, "
                         f"peak RSS {r['peak_rss_mb']:.0f} MB")
            if (variant, size) == ("mrfnet", "256x256"):
                for name in ("default", "stock Caffe"):
                    if name in all_levers:
                        p = _worker(["profile", "--deploy", deploy, "--weights", weights,
                                     "--size", size, "--repeat", "3"], all_levers[name])
                        p.update(variant=variant, size=size, lever=name)
                        profiles.append(p)
                        _say(f"profile {variant} {size} caffe [{name}]: {p['total_ms']:.0f} ms")
    return rows, profiles, int8_quality


def _video(quick):
    """Video rows (benchmarks.video) for the default backend of `mrfnet deblur`."""
    from benchmarks.video import VIDEO_SIZES
    from inference.backends import DEFAULT_CPU_BACKEND

    rows = []
    with tempfile.TemporaryDirectory(prefix="mrfnet-bench-") as tmp:
        deploy, weights, origin = _model("mrfnet", tmp)
        if DEFAULT_CPU_BACKEND == "onnxruntime":
            weights = _onnx_model(deploy, weights, tmp, "mrfnet", {})[0]
        for size, frames in VIDEO_SIZES[:1] if quick else VIDEO_SIZES:
            r = _worker(["video", "--backend", DEFAULT_CPU_BACKEND, "--deploy", deploy,
                         "--weights", weights, "--size", size, "--frames", str(frames)],
                        {"backends": BACKENDS}, DEFAULT_CPU_BACKEND)
            r.update(size=size, backend=DEFAULT_CPU_BACKEND, weights=origin)
            rows.append(r)
            _say(f"video {size} {DEFAULT_CPU_BACKEND}: {r['video_fps']:.2f} frames/s, pure "
                 f"{r['pure_fps']:.2f} ({r['video_vs_pure']:.2f}x), ensemble x"
                 f"{r['ensemble_factor']:.1f} the time")
    return rows


def _training(all_levers, quick):
    from solver.measure import time_training
    rows = []
    for label, batch, crop, iters, extra in TRAINING[:1] if quick else TRAINING:
        for name in ("default", *extra):
            if name not in all_levers:
                continue
            r = time_training("mrfnet", batch, crop, iters=iters, env=lever_env(all_levers[name]),
                              workers=all_levers[name].get("train_workers", 1))
            r.update(label=label, batch=batch, crop=crop, lever=name)
            rows.append(r)
            _say(f"training mrfnet batch {batch} x {crop}x{crop} [{name}]: "
                 f"{r['seconds_per_iter']:.2f} s/iter, peak RSS {r['peak_rss_mb']:.0f} MB")
    return rows


def measure(quick=False, baseline_caffe=None, before_caffe=None, val=None):
    from data_prep.bench import measure_convert, measure_writers

    all_levers = levers(baseline_caffe, before_caffe=before_caffe)
    res = {"machine": _machine(), "started": time.strftime("%Y-%m-%d %H:%M:%S"), "quick": quick,
           "levers": {k: {f: _portable(v) for f, v in lv.items() if f != "backends"}
                      for k, lv in all_levers.items()},
           "baseline_caffe": _portable(baseline_caffe) if baseline_caffe else None,
           "before_caffe": _portable(before_caffe) if before_caffe else None,
           "load_before": os.getloadavg()}
    res["layers"] = _layers(all_levers)
    res["forward"], res["profile"], res["int8_quality"] = _forwards(all_levers, quick, val)
    res["video"] = _video(quick)
    res["training"] = _training(all_levers, quick)
    _say("data conversion")
    res["data"] = {"writers": measure_writers(patches=96, crop=256),
                   "convert": measure_convert(crops=8, crop=256)}
    res["load_after"] = os.getloadavg()
    res["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    return res


def _portable(value):
    """A path as the report shows it: the home folder as ~ (the report is committed; the
    machine's own paths are not)."""
    if isinstance(value, (str, Path)):
        return str(value).replace(str(Path.home()), "~", 1)
    return value


def _machine():
    import cv2
    import numpy
    import onnxruntime
    cpu = "?"
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": numpy.__version__, "opencv": cv2.__version__,
            "onnxruntime": onnxruntime.__version__,
            "blas": "OpenBLAS (Debian libopenblas0-openmp for this project's Caffe; "
                    "libopenblas0-pthread for the stock and 0001-0003 builds)",
            "env": {k: os.environ[k] for k in (*PINNED_BLAS, "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")
                    if k in os.environ}}


def _lever_note(res):
    env = res["machine"]["env"]
    notes = ["Levers: **1 thread** = OpenBLAS, OpenCV and ONNX Runtime limited to one thread"]
    if "OpenBLAS detects CPU" in res["levers"]:
        pinned = ", ".join(f"{k}={env[k]}" for k in PINNED_BLAS if k in env)
        notes.append(f"**OpenBLAS detects CPU** = without this machine's {pinned} (OpenBLAS picks "
                     "its kernels itself, as on a machine without that setting)")
    notes.append("**Winograd off** = `cv2.dnn.Net.enableWinograd(False)`")
    if "no blob reuse" in res["levers"]:
        notes.append("**no blob reuse** = this project's Caffe with `MRFNET_BLOB_REUSE=0`: every "
                     "blob and a max pooling mask per layer kept, as before patch 0003")
    if "no memory arena" in res["levers"]:
        notes.append("**graph opt extended / basic** = ONNX Runtime's graph optimisation level "
                     "below its default 'all' (extended: operator fusions without the NCHWc "
                     "layout of 'all'; basic: constant folding and clean-ups only); **no memory "
                     "arena** = ONNX Runtime without a CPU arena (by default `mrfnet` gives it "
                     "one that grows by exactly what is asked and keeps freed memory for the "
                     "next forward; without it memory goes back to the system); **thread "
                     "spinning** = its idle worker threads spin waiting for work "
                     "(`session.intra_op.allow_spinning` 1, ONNX Runtime's own default; "
                     "`mrfnet` lets them sleep)")
    if res.get("baseline_caffe"):
        notes.append("**stock Caffe** = the same Caffe built without this project's patches "
                     "(`MRFNET_CAFFE_PATCHES=0`: no shared im2col buffer, the direct max-pooling "
                     "loop, -O2, no blob reuse), for before/after")
    if res.get("before_caffe"):
        notes.append("**patches 0001-0003** = this project's build before patch 0004 "
                     "(`MRFNET_CAFFE_PATCHES=0003`: per-image GEMMs, one-core im2col/pooling/ReLU, "
                     "pthread OpenBLAS)")
    if "no batch-wide GEMM" in res["levers"]:
        notes.append("**pthread OpenBLAS** = this project's Caffe with Debian's default OpenBLAS "
                     "build first on LD_LIBRARY_PATH (its own thread pool beside OpenMP's); **no "
                     "batch-wide GEMM** = `MRFNET_CONV_BATCH_COLUMNS=0` (one GEMM per image, as "
                     "before patch 0004); **OpenMP threads spin** = `OMP_WAIT_POLICY=ACTIVE` "
                     "(idle threads spin instead of sleeping, the OpenMP default that pycaffe "
                     "overrides)")
    if WORKERS_LEVER in res["levers"]:
        notes.append(f"**{WORKERS_LEVER}** = `mrfnet train {WORKERS_LEVER}` (solver/parallel.py): "
                     "each batch split across two one-thread processes of this project's build, "
                     "their gradients averaged before Caffe's update; peak RSS is the sum of both "
                     "processes")
    return "; ".join(notes) + ". The `core` column is the OpenBLAS kernel set the process ran."


def markdown(res):
    m = res["machine"]
    best = {}
    for r in res["layers"]:
        best[(r["backend"], r["lever"])] = max(best.get((r["backend"], r["lever"]), 0), r["gflops"])
    best_default = {b: v for (b, lv), v in best.items() if lv == "default"}
    load = res.get("load_before"), res.get("load_after")
    load_txt = (f" Load average (1/5/15 min) {load[0][0]:.2f}/{load[0][1]:.2f}/{load[0][2]:.2f} "
                f"before, {load[1][0]:.2f}/{load[1][1]:.2f}/{load[1][2]:.2f} after."
                if all(load) else "")
    lines = ["# Benchmarks", "",
             f"One run of `make bench` ({res['started']} to {res['finished']}) on {m['cpu']}, "
             f"{m['cores']} cores, CPU only; Python {m['python']}, numpy {m['numpy']}, OpenCV {m['opencv']}, "
             f"{_ort_version(m)}Caffe with {m['blas']}. The machine is shared: compare ratios within this run, "
             f"not absolute times across runs.{load_txt} Raw numbers: `benchmarks.json`.", "",
             _lever_note(res), "", *_ratio_lines(res),
             "## Practical limit: one convolution layer alone (batch 1, fp32, median of 5)", "",
             "GFLOP/s = the direct convolution's multiply-adds x 2 / time. OpenCV's Winograd "
             "convolutions do fewer operations for 3x3 kernels, so its figures can exceed the "
             "CPU's arithmetic peak: read them as effective speed.", "",
             "| layer | backend | lever | core | ms | GFLOP/s |", "|---|---|---|---|---|---|"]
    for r in res["layers"]:
        lines.append(f"| {r['layer']} | {r['backend']} | {r['lever']} | {_core(r)} | "
                     f"{1000 * r['median_s']:.1f} | {r['gflops']:.1f} |")
    lines += ["", "## Deploy forward (batch 1, after one warm-up; median)", "",
              "Model load (prototxt + caffemodel; for onnxruntime the exported .onnx) is timed "
              "apart from the forward. GFLOP/s = "
              "multiply-adds x 2 / forward time; 'of limit' compares it with the best single layer "
              "of the same backend and lever in this run (of the default lever where the lever has "
              "no single-layer row).", "",
              "| variant | size | backend | lever | core | load s | forward s | GFLOP/s | of limit | peak RSS MB |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["forward"]:
        limit = best.get((r["backend"], r["lever"])) or best_default.get(r["backend"], float("nan"))
        lines.append(f"| {r['variant']} | {r['size']} | {r['backend']} | {r['lever']} | {_core(r)} | "
                     f"{r['load_s']:.2f} | {r['forward_median_s']:.3f} | {r['gflops']:.1f} | "
                     f"{r['gflops'] / limit:.0%} | {r['peak_rss_mb']:.0f} |")
    weights = sorted({r["weights"] for r in res["forward"]})
    lines += ["", f"Weights timed: {', '.join(weights)}.", *_export_line(res["forward"]), ""]
    lines += int8_markdown(res.get("int8_quality"))
    lines += _profile_table(res.get("profile", []))
    lines += video_markdown(res.get("video", []))
    lines += ["## Training (MRFNet, 4 paths, pycaffe Adam step, Python loss; fresh process)", "",
              "| setting | batch | crop | lever | s/iteration | peak RSS MB |", "|---|---|---|---|---|---|"]
    for r in res["training"]:
        lines.append(f"| {r['label']} | {r['batch']} | {r['crop']}x{r['crop']} | {r.get('lever', 'default')} | "
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


def _ratio_lines(res):
    """The run's headline comparisons, computed from its own rows (nothing typed in by hand)."""
    fwd = {(r["variant"], r["size"], r["backend"], r["lever"]): r for r in res["forward"]}
    train = {(r["label"], r.get("lever", "default")): r for r in res["training"]}
    lines = []

    def both(a, b, what):
        if a in fwd and b in fwd:
            fa, fb = fwd[a], fwd[b]
            lines.append(f"- {what}: {fb['forward_median_s'] / fa['forward_median_s']:.2f}x the speed, "
                         f"{fa['peak_rss_mb'] / fb['peak_rss_mb']:.2f}x the peak memory "
                         f"({fb['forward_median_s']:.3f} -> {fa['forward_median_s']:.3f} s, "
                         f"{fb['peak_rss_mb']:.0f} -> {fa['peak_rss_mb']:.0f} MB)")

    def steps(a, b, what):
        """Training step a against b: speed and peak memory ratios."""
        if a and b:
            lines.append(f"- {what}: "
                         f"{b['seconds_per_iter'] / a['seconds_per_iter']:.2f}x the speed, "
                         f"{a['peak_rss_mb'] / b['peak_rss_mb']:.2f}x the peak memory "
                         f"({b['seconds_per_iter']:.3f} -> {a['seconds_per_iter']:.3f} s/iteration)")

    for size in ("256x256", "1280x720"):
        both(("mrfnet", size, "caffe", "default"), ("mrfnet", size, "caffe", "stock Caffe"),
             f"pycaffe MRFNet {size}, this project's build vs stock Caffe")
        both(("mrfnet", size, "caffe", "default"), ("mrfnet", size, "caffe", "no blob reuse"),
             f"pycaffe MRFNet {size}, blob reuse vs every blob kept (patch 0003 alone)")
    for size in ("256x256", "1280x720"):
        both(("mrfnet", size, "caffe", "default"), ("mrfnet", size, "caffe", "patches 0001-0003"),
             f"pycaffe MRFNet {size}, this build vs patches 0001-0003 (patch 0004 and after)")
    for label, *_ in TRAINING:
        for other, what in (("stock Caffe", "this project's build vs stock Caffe"),
                            ("patches 0001-0003", "this build vs patches 0001-0003 (patch 0004)"),
                            ("1 thread", "two cores vs one"),
                            ("pthread OpenBLAS", "OpenMP OpenBLAS vs pthread OpenBLAS"),
                            ("no batch-wide GEMM", "batch-wide vs per-image GEMMs"),
                            ("OpenMP threads spin", "idle threads sleeping vs spinning")):
            steps(train.get((label, "default")), train.get((label, other)),
                  f"training, {label}, {what}")
        # `mrfnet train --workers 2` (two processes) against one process of each build
        for other, what in (("default", "one process of this build"),
                            ("patches 0001-0003", "one process of patches 0001-0003"),
                            ("stock Caffe", "one process of stock Caffe")):
            steps(train.get((label, WORKERS_LEVER)), train.get((label, other)),
                  f"training, {label}, `mrfnet train {WORKERS_LEVER}` vs {what}")
    for size in ("256x256", "1280x720"):
        both(("mrfnet", size, "opencv", "default"), ("mrfnet", size, "caffe", "default"),
             f"MRFNet {size}, OpenCV dnn vs pycaffe (this project's build)")
        both(("mrfnet", size, "onnxruntime", "default"), ("mrfnet", size, "caffe", "default"),
             f"MRFNet {size}, ONNX Runtime vs pycaffe (this project's build)")
        both(("mrfnet", size, "onnxruntime", "default"), ("mrfnet", size, "opencv", "default"),
             f"MRFNet {size}, ONNX Runtime vs OpenCV dnn")
    for size in ("256x256", "1280x720"):
        both(("mrfnet", size, "onnxruntime", "int8"), ("mrfnet", size, "onnxruntime", "default"),
             f"MRFNet {size}, ONNX Runtime int8 vs fp32")
        both(("mrfnet", size, "onnxruntime", "int8"), ("mrfnet", size, "opencv", "default"),
             f"MRFNet {size}, ONNX Runtime int8 vs OpenCV dnn")
    both(("mrfnet", "256x256", "caffe", "OpenBLAS detects CPU"), ("mrfnet", "256x256", "caffe", "default"),
         "pycaffe MRFNet 256x256, OpenBLAS's own CPU detection vs the pinned kernels")
    for backend, label in (("caffe", "pycaffe"), ("opencv", "OpenCV"), ("onnxruntime", "ONNX Runtime")):
        both(("mrfnet", "256x256", backend, "1 thread"), ("mrfnet", "256x256", backend, "default"),
             f"{label} MRFNet 256x256, 1 thread vs the default")
    both(("mrfnet", "256x256", "opencv", "Winograd off"), ("mrfnet", "256x256", "opencv", "default"),
         "OpenCV MRFNet 256x256, Winograd off vs on")
    for level in ("extended", "basic"):
        both(("mrfnet", "256x256", "onnxruntime", f"graph opt {level}"),
             ("mrfnet", "256x256", "onnxruntime", "default"),
             f"ONNX Runtime MRFNet 256x256, graph optimisation {level} vs all")
    both(("mrfnet", "256x256", "onnxruntime", "thread spinning"),
         ("mrfnet", "256x256", "onnxruntime", "default"),
         "ONNX Runtime MRFNet 256x256, idle threads spinning vs sleeping")
    for size in ("256x256", "1280x720"):
        both(("mrfnet", size, "onnxruntime", "no memory arena"),
             ("mrfnet", size, "onnxruntime", "default"),
             f"ONNX Runtime MRFNet {size}, memory arena off vs on")
    return ["## This run in ratios", ""] + lines + [""] if lines else []


def _ort_version(m):
    return f"ONNX Runtime {m['onnxruntime']}, " if m.get("onnxruntime") else ""


def _export_line(rows):
    """How long `mrfnet export` (prototxt + caffemodel -> .onnx) took per variant."""
    took = {r["variant"]: r["export_s"] for r in rows if r.get("export_s") is not None}
    if not took:
        return []
    return ["", "ONNX Runtime ran each net's ONNX export (inference.onnx_export, as "
            "`mrfnet export` writes it; made once per model, before its rows): "
            + ", ".join(f"{v} {t:.2f} s" for v, t in took.items()) + "."]


def _core(r):
    """OpenBLAS's kernels matter to Caffe only (OpenCV dnn has its own convolution code)."""
    return (r.get("blas_core") or "-") if r.get("backend", "caffe") == "caffe" else "-"


def _profile_table(profiles):
    """Where a pycaffe forward's time goes, per layer type and lever (ms, share)."""
    if not profiles:
        return []
    kinds = sorted({k for p in profiles for k in p["ms_by_type"]},
                   key=lambda k: -profiles[0]["ms_by_type"].get(k, 0))
    head = " | ".join(f"{p['lever']} ms | share" for p in profiles)
    lines = [f"## Where pycaffe's forward time goes ({profiles[0]['variant']} {profiles[0]['size']}, "
             "each layer timed alone, mean of 3)", "",
             f"| layer type | {head} |", "|---|" + "---|---|" * len(profiles)]
    for k in kinds + ["total"]:
        cells = []
        for p in profiles:
            ms = p["total_ms"] if k == "total" else p["ms_by_type"].get(k, 0.0)
            cells.append(f"{ms:.1f} | {ms / p['total_ms']:.0%}")
        lines.append(f"| {k} | {' | '.join(cells)} |")
    return lines + [""]


def write_atomic(path, text):
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
