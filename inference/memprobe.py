"""Measure how much memory one forward pass needs, in a fresh process.

    python -m inference.memprobe DEPLOY WEIGHTS [--backend opencv|onnxruntime|caffe] [--side 256]

prints one JSON line: {"peak_growth_bytes": ..., "side": ...}. The tile planner uses it for
OpenCV and ONNX Runtime, whose memory reuse makes the sum of all blobs a 3-4x overestimate. It
runs in its own process because a peak measured inside a long-lived one is unreliable: the
allocator hands a forward memory that earlier work freed, and the growth seen is then too small.
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np


def status_bytes(field):
    """A memory field of /proc/self/status (VmRSS, VmHWM, RssAnon, ...) in bytes; None where
    there is none (not Linux). The one reader of it for inference and evaluation."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def peak_growth(backend, side):
    """Growth of this process's peak RSS over one forward at side x side (after a tiny forward
    that makes the allocations that do not scale with the image). Restarts VmHWM."""
    small = backend.stride * max(1, 16 // backend.stride)
    backend.forward(np.zeros((1, 3, small, small), np.float32))
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS
    before = status_bytes("VmRSS")
    backend.forward(np.zeros((1, 3, side, side), np.float32))
    peak = status_bytes("VmHWM")
    if before is None or peak is None:
        raise OSError("/proc/self/status has no VmRSS/VmHWM")
    return peak - before


def measure(deploy, weights, backend="opencv", side=256, timeout=300):
    """Peak growth in bytes of one forward at side x side, measured in a fresh process; None
    when it cannot be measured here (no /proc, the child failed)."""
    cmd = [sys.executable, "-m", "inference.memprobe", str(deploy), str(weights),
           "--backend", backend, "--side", str(side)]
    env = dict(os.environ, GLOG_minloglevel="2")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        return int(json.loads(proc.stdout.strip().splitlines()[-1])["peak_growth_bytes"])
    except (OSError, subprocess.SubprocessError, ValueError, KeyError, IndexError):
        return None


def main(argv=None):
    from .backends import BACKENDS, load

    p = argparse.ArgumentParser(prog="python -m inference.memprobe", description=__doc__.splitlines()[0])
    p.add_argument("deploy")
    p.add_argument("weights")
    p.add_argument("--backend", choices=BACKENDS, default="opencv")
    p.add_argument("--side", type=int, default=256)
    a = p.parse_args(argv)
    backend = load(a.deploy, a.weights, a.backend)
    print(json.dumps({"peak_growth_bytes": peak_growth(backend, a.side), "side": a.side}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
