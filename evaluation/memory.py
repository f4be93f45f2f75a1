"""Peak memory of training, like the paper's Table III (Network + Batch 8 / Batch 16).

The paper measured GPU memory. Here (CPU Caffe) the measure is the peak resident set size of a
fresh process that builds the stock train net (prototxt_gen, Input data layers, EuclideanLoss
per scale) under an Adam solver and runs a few real training iterations on random 256x256
crops: the peak RSS (VmHWM) of that child. The child's RSS just before the net is built (Python,
numpy, Caffe loaded) is reported too, so "net + batch" = peak - baseline is comparable across
runs.

Each measurement runs in its own subprocess because the peak never goes down, and under an
address-space limit (RLIMIT_AS, default 85% of available memory) so a batch that does not fit
fails that one child instead of waking the kernel's OOM killer.
"""
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from mrfnet.sysmem import available_bytes, status_bytes

from .errors import EvaluationError

DEFAULT_BATCHES = (8, 16)
DEFAULT_CROP = 256
DEFAULT_ITERS = 2
MEASURE = "peak RSS of a CPU training process (VmHWM), not GPU memory"


def _available_mb():
    avail = available_bytes()
    return None if avail is None else avail / 2 ** 20


def _status_mb(field):
    """A /proc/self/status memory field in MB, or None off Linux."""
    value = status_bytes(field)
    return None if value is None else value / 2 ** 20


def _peak_mb():
    """Peak RSS of this process image. VmHWM, not ru_maxrss: Linux carries ru_maxrss over
    fork + exec, so a child of a big parent would report the parent's size."""
    hwm = _status_mb("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _current_mb():
    rss = _status_mb("VmRSS")
    return rss if rss is not None else _peak_mb()


def _child(variant, paths, crop, batch, iters):
    """Runs inside the subprocess: build, train `iters` steps, print one JSON line."""
    import numpy as np
    import caffe
    from prototxt_gen import nets
    from prototxt_gen.solver_spec import ADAM, render

    caffe.set_mode_cpu()
    baseline = _current_mb()
    with tempfile.TemporaryDirectory(prefix="mrfnet-mem-") as tmp:
        net_path = Path(tmp) / "train.prototxt"
        net_path.write_text(nets.to_text(nets.train_net(
            variant, paths, data="input", loss="stock", crop=crop, batch_size=batch)))
        solver_path = Path(tmp) / "solver.prototxt"
        solver_path.write_text(render(dict(
            ADAM, train_net=str(net_path), lr_policy="fixed", max_iter=1000000, display=0,
            snapshot=0, snapshot_prefix=str(Path(tmp) / "snap"), solver_mode="CPU")))
        solver = caffe.get_solver(str(solver_path))
        rng = np.random.default_rng(0)
        net = solver.net
        for _ in range(iters):
            blur = rng.random(net.blobs["data"].data.shape, dtype=np.float32)
            net.blobs["data"].data[...] = blur
            net.blobs["label"].data[...] = np.clip(blur + 0.05, 0, 1)
            solver.step(1)
        params = sum(p.data.size for ps in net.params.values() for p in ps)
    peak = _peak_mb()
    print(json.dumps({"baseline_rss_mb": baseline, "peak_rss_mb": peak,
                      "net_batch_mb": peak - baseline, "params": int(params)}))


def training_peak_rss(variant, batch, crop=DEFAULT_CROP, paths=4, iters=DEFAULT_ITERS,
                      limit_mb=None, timeout=3600):
    """Measure one (variant, batch) in a subprocess; returns a dict (see module docstring).

    A child that runs out of the address-space limit returns {"error": ...} instead of raising,
    so a table can show which batch did not fit.
    """
    if batch < 1 or crop < 1 or iters < 1:
        raise EvaluationError(f"memory: batch, crop and iterations must be >= 1 "
                              f"(got {batch}, {crop}, {iters})")
    avail = _available_mb()
    if limit_mb is None and avail:
        limit_mb = 0.85 * avail
    limit = int(limit_mb * 2 ** 20) if limit_mb else None

    def set_limit():
        if limit:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    code = ("import sys; from evaluation.memory import _child; "
            "_child(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), "
            "int(sys.argv[5]))")
    env = dict(os.environ, GLOG_minloglevel="2")
    repo = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = repo + os.pathsep + env.get("PYTHONPATH", "")
    result = {"variant": variant, "paths": paths, "crop": crop, "batch": batch, "iters": iters,
              "device": "cpu", "measure": MEASURE, "limit_mb": limit_mb}
    try:
        proc = subprocess.run([sys.executable, "-c", code, variant, str(paths), str(crop),
                               str(batch), str(iters)], capture_output=True, text=True,
                              timeout=timeout, preexec_fn=set_limit, env=env)
    except subprocess.TimeoutExpired:
        result["error"] = f"training step did not finish within {timeout} s"
        return result
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        result["error"] = (f"training step did not complete (exit {proc.returncode}); "
                           f"likely out of the {limit_mb:.0f} MB limit: {tail}" if limit_mb
                           else f"training step failed (exit {proc.returncode}): {tail}")
        return result
    result.update(json.loads(lines[-1]))
    return result
