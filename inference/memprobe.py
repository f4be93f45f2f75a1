"""Measure how much memory one forward pass needs, in a fresh process.

    python -m inference.memprobe DEPLOY WEIGHTS [--backend opencv|onnxruntime|caffe] [--side 256]

prints one JSON line: {"peak_growth_bytes": ..., "side": ...}; mrfnet.sysmem.measure_forward
starts it and reads the line. The tile planner uses it for OpenCV and ONNX Runtime, whose memory
reuse makes the sum of all blobs a 3-4x overestimate. It runs in its own process because a peak
measured inside a long-lived one is unreliable: the allocator hands a forward memory that earlier
work freed, and the growth seen is then too small.
"""
import argparse
import json
import sys

import numpy as np

from mrfnet.caffe_log import quiet_caffe
from mrfnet.sysmem import status_bytes

from .backends import BACKENDS, load


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


def main(argv=None):
    quiet_caffe()
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
