"""One benchmark measurement in a fresh process (`python -m benchmarks.worker ...`).

A fresh process per measurement keeps peak memory attributable and lets the benchmark vary
process-wide levers (OPENBLAS_NUM_THREADS, OpenCV's thread count) between measurements.
Prints one JSON line.

    forward: load a deploy net on a backend, warm up, time `repeat` forwards (median); for
             onnxruntime --weights is the net's ONNX export and --ort-* set its options
    layer:   one convolution layer alone, the practical GFLOP/s limit of a backend here
    profile: pycaffe forward time per layer type (where the time of a deploy forward goes)
    video:   `mrfnet deblur`'s streamed video path vs pure inference of the same frames, and
             the self-ensemble's time factor (benchmarks.video)

Every result names the OpenBLAS kernel set the process ran ("blas_core"), since
OPENBLAS_CORETYPE changes it.
"""
import argparse
import json
import os
import statistics
import tempfile
import time

import numpy as np

from mrfnet.caffe_log import quiet_caffe
from mrfnet.sysmem import status_bytes


def _peak_rss_mb():
    peak = status_bytes("VmHWM")
    return float("nan") if peak is None else peak / 2 ** 20


def blas_core():
    """The kernel set of the OpenBLAS loaded in this process (None if it is not loaded)."""
    import ctypes
    try:
        lib = ctypes.CDLL("libopenblas.so.0", mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
        lib.openblas_get_corename.restype = ctypes.c_char_p
        return lib.openblas_get_corename().decode()
    except (OSError, AttributeError):
        return None


def random_weights(deploy, path, seed=0):
    """A caffemodel with filler-initialised weights (timing does not depend on their values)."""
    import caffe
    np.random.seed(seed)
    caffe.Net(str(deploy), caffe.TEST).save(str(path))


def _cv_options(cv_threads, cv_winograd):
    import cv2
    if cv_threads is not None:
        cv2.setNumThreads(cv_threads)
    return (lambda net: net.enableWinograd(bool(cv_winograd))) if cv_winograd is not None else None


def _ort_options(ort_threads=None, ort_opt=None, ort_arena=None, ort_spin=None):
    """The onnxruntime backend's options that were given (the others keep its defaults)."""
    given = {"threads": ort_threads, "optimization": ort_opt,
             "arena": None if ort_arena is None else bool(ort_arena),
             "spinning": None if ort_spin is None else bool(ort_spin)}
    return {k: v for k, v in given.items() if v is not None}


def time_forward(backend, deploy, weights, height, width, repeat, cv_threads=None, cv_winograd=None,
                 ort_options=None):
    from inference.backends import load

    configure = _cv_options(cv_threads, cv_winograd) if backend == "opencv" else None
    t0 = time.perf_counter()
    net = load(str(deploy), str(weights), backend, **(ort_options or {}))
    load_s = time.perf_counter() - t0
    if configure:
        configure(net.net)
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


def profile_forward(deploy, weights, height, width, repeat):
    """pycaffe forward milliseconds per layer type (convolutions split into 1x1 and larger),
    each layer timed alone over `repeat` passes after a warm-up, on a uniform random input."""
    import caffe
    caffe.set_mode_cpu()
    net = caffe.Net(str(deploy), str(weights), caffe.TEST)
    net.blobs["data"].reshape(1, 3, height, width)
    net.reshape()
    net.blobs["data"].data[...] = np.random.default_rng(0).uniform(0, 1, (1, 3, height, width))
    net.forward()
    ms = {}
    for _ in range(repeat):
        for i, (name, layer) in enumerate(zip(net._layer_names, net.layers)):
            kind = layer.type
            if kind == "Convolution":
                kind += " 1x1" if net.params[name][0].data.shape[2:] == (1, 1) else " kxk"
            t0 = time.perf_counter()
            net._forward(i, i)
            ms[kind] = ms.get(kind, 0.0) + 1000 * (time.perf_counter() - t0) / repeat
    return {"ms_by_type": ms, "total_ms": sum(ms.values())}


def time_layer(backend, cin, cout, k, h, w, repeat, cv_threads=None, ort_options=None):
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
        elif backend == "onnxruntime":
            from inference.onnx_export import export
            from inference.backends import ort_session
            # the single-layer net has no "predict_deblur": a bare session, the backend's options
            session = ort_session(str(export(deploy, weights, os.path.join(d, "conv.onnx"))),
                                  **(ort_options or {}))
            blob = np.random.default_rng(0).uniform(0, 1, (1, cin, h, w)).astype(np.float32)

            def run():
                return session.run(None, {"data": blob})
        else:
            import cv2
            _cv_options(cv_threads, None)
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
    quiet_caffe()
    from inference.backends import BACKENDS, ORT_LEVELS

    p = argparse.ArgumentParser(prog="python -m benchmarks.worker")
    p.add_argument("what", choices=["forward", "layer", "profile", "video"])
    p.add_argument("--backend", choices=BACKENDS, default="caffe")
    p.add_argument("--deploy")
    p.add_argument("--weights")
    p.add_argument("--size", default="256x256", help="WIDTHxHEIGHT")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--frames", type=int, default=24, help="video: frames in the clip")
    p.add_argument("--layer", default="256,256,3,64,64", help="cin,cout,k,h,w")
    p.add_argument("--cv-threads", type=int)
    p.add_argument("--cv-winograd", type=int, choices=[0, 1])
    p.add_argument("--ort-threads", type=int, help="ONNX Runtime intra-op threads")
    p.add_argument("--ort-opt", choices=ORT_LEVELS,
                   help="ONNX Runtime graph optimisation level")
    p.add_argument("--ort-arena", type=int, choices=[0, 1], help="ONNX Runtime CPU memory arena")
    p.add_argument("--ort-spin", type=int, choices=[0, 1],
                   help="ONNX Runtime worker threads spin while idle")
    a = p.parse_args(argv)
    ort = _ort_options(a.ort_threads, a.ort_opt, a.ort_arena, a.ort_spin)
    w, h = (int(v) for v in a.size.lower().split("x"))
    if a.what == "forward":
        out = time_forward(a.backend, a.deploy, a.weights, h, w, a.repeat, a.cv_threads,
                           a.cv_winograd, ort)
    elif a.what == "video":
        from benchmarks.video import time_video
        out = time_video(a.backend, a.deploy, a.weights, w, h, a.frames, ort_options=ort)
        out["peak_rss_mb"] = _peak_rss_mb()
    elif a.what == "profile":
        out = profile_forward(a.deploy, a.weights, h, w, a.repeat)
    else:
        cin, cout, k, h, w = (int(v) for v in a.layer.split(","))
        out = time_layer(a.backend, cin, cout, k, h, w, a.repeat, a.cv_threads, ort)
    out["blas_core"] = blas_core()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
