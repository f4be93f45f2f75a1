"""One benchmark measurement in a fresh process (`python -m evaluation.bench_worker ...`).

A fresh process per measurement keeps peak memory attributable and lets the benchmark vary
process-wide levers (OPENBLAS_NUM_THREADS, OpenCV's thread count) between measurements.
Prints one JSON line.

    forward: load a deploy net on a backend, warm up, time `repeat` forwards (median)
    layer:   one convolution layer alone, the practical GFLOP/s limit of a backend here
"""
import argparse
import json
import os
import statistics
import tempfile
import time

import numpy as np

os.environ.setdefault("GLOG_minloglevel", "2")


def _peak_rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def random_weights(deploy, path, seed=0):
    """A caffemodel with filler-initialised weights (timing does not depend on their values)."""
    import caffe
    np.random.seed(seed)
    caffe.Net(str(deploy), caffe.TEST).save(str(path))


def time_forward(backend, deploy, weights, height, width, repeat, cv_threads=None):
    from inference.backends import load

    if cv_threads is not None:
        import cv2
        cv2.setNumThreads(cv_threads)
    t0 = time.perf_counter()
    net = load(str(deploy), str(weights), backend)
    load_s = time.perf_counter() - t0
    x = np.random.default_rng(0).uniform(0, 1, (1, 3, height, width)).astype(np.float32)
    t0 = time.perf_counter()
    net.forward(x)                        # warm-up: allocations, OpenCV's graph set-up
    warmup_s = time.perf_counter() - t0
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        net.forward(x)
        times.append(time.perf_counter() - t0)
    return {"load_s": load_s, "warmup_s": warmup_s, "forward_median_s": statistics.median(times),
            "forward_s": times, "peak_rss_mb": _peak_rss_mb()}


def _layer_prototxt(cin, cout, k, h, w):
    return (f'name: "one_conv"\ninput: "data"\ninput_shape {{ dim: 1 dim: {cin} dim: {h} dim: {w} }}\n'
            f'layer {{ name: "conv" type: "Convolution" bottom: "data" top: "conv"\n'
            f'  convolution_param {{ num_output: {cout} kernel_size: {k} pad: {k // 2}\n'
            f'    weight_filler {{ type: "xavier" }} }} }}\n')


def time_layer(backend, cin, cout, k, h, w, repeat, cv_threads=None):
    with tempfile.TemporaryDirectory(prefix="mrfnet-bench-") as d:
        deploy = os.path.join(d, "conv.prototxt")
        with open(deploy, "w") as f:
            f.write(_layer_prototxt(cin, cout, k, h, w))
        weights = os.path.join(d, "conv.caffemodel")
        random_weights(deploy, weights)
        if backend == "caffe":
            import caffe
            net = caffe.Net(deploy, weights, caffe.TEST)
            net.blobs["data"].data[...] = np.random.default_rng(0).uniform(0, 1, (1, cin, h, w))
            run = net.forward
        else:
            import cv2
            if cv_threads is not None:
                cv2.setNumThreads(cv_threads)
            net = cv2.dnn.readNetFromCaffe(deploy, weights)
            blob = np.random.default_rng(0).uniform(0, 1, (1, cin, h, w)).astype(np.float32)

            def run():
                net.setInput(blob)
                return net.forward()
        run()
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            run()
            times.append(time.perf_counter() - t0)
    t = statistics.median(times)
    macs = cin * cout * k * k * h * w
    return {"layer": f"{k}x{k} {cin}->{cout} @{h}x{w}", "macs": macs, "median_s": t,
            "gflops": 2 * macs / t / 1e9}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m evaluation.bench_worker")
    p.add_argument("what", choices=["forward", "layer"])
    p.add_argument("--backend", choices=["caffe", "opencv"], required=True)
    p.add_argument("--deploy")
    p.add_argument("--weights")
    p.add_argument("--size", default="256x256", help="WIDTHxHEIGHT")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--layer", default="256,256,3,64,64", help="cin,cout,k,h,w")
    p.add_argument("--cv-threads", type=int)
    a = p.parse_args(argv)
    if a.what == "forward":
        w, h = (int(v) for v in a.size.lower().split("x"))
        out = time_forward(a.backend, a.deploy, a.weights, h, w, a.repeat, a.cv_threads)
    else:
        cin, cout, k, h, w = (int(v) for v in a.layer.split(","))
        out = time_layer(a.backend, cin, cout, k, h, w, a.repeat, a.cv_threads)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
