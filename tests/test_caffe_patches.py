"""What the project's Caffe patches (tools/caffe/patches/) promise, checked on the built Caffe.

0001 shares one im2col buffer between convolution layers: forward and backward stay exact
(checked against numpy and finite differences through layers of different im2col sizes), and
a forward's memory no longer grows with the number of convolution layers.
0002 computes max pooling separably: the same maxima and the same argmax mask (first maximum in
row-major order) as a direct loop, ties included, so the backward pass routes the same way.
0003 (blob memory reuse in TEST nets) is checked in test_caffe_blob_reuse.py.
0004 runs one GEMM for several images where images are small, and the element-wise loops,
im2col/col2im and pooling on every core (OpenMP, with OpenBLAS's OpenMP build): a batch gives
what the same layers give image by image (within float rounding: sums are reordered), pooling
planes in parallel give the direct loop's values and mask, and the process really runs the
OpenMP runtime and the OpenMP OpenBLAS.
0005 lets `caffe train` create its snapshot folder: test_readme_sequence.py.
0006 makes `caffe train/test/time` stop on bad input with one message: test_caffe_errors.py.
"""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import caffe
from gradcheck import central_difference

REPO = Path(__file__).resolve().parents[1]


def _net(tmp_path, text, name="net.prototxt", phase=caffe.TEST):
    path = tmp_path / name
    path.write_text(text)
    return caffe.Net(str(path), phase)


# ---------------------------------------------------------------- 0002: separable max pooling

def _direct_max_pool(x, kh, kw, sh, sw, ph, pw):
    """BVLC's loop in numpy: per window the first maximum in row-major order, and its index."""
    n, c, h, w = x.shape
    oh = int(np.ceil((h + 2 * ph - kh) / sh)) + 1
    ow = int(np.ceil((w + 2 * pw - kw) / sw)) + 1
    if ph or pw:  # Caffe drops a last window that starts inside the padding
        oh -= (oh - 1) * sh >= h + ph
        ow -= (ow - 1) * sw >= w + pw
    top = np.full((n, c, oh, ow), -np.finfo(np.float32).max, np.float32)
    mask = np.full((n, c, oh, ow), -1, np.int64)
    for i in range(oh):
        h0, h1 = max(i * sh - ph, 0), min(i * sh - ph + kh, h)
        for j in range(ow):
            w0, w1 = max(j * sw - pw, 0), min(j * sw - pw + kw, w)
            win = x[:, :, h0:h1, w0:w1].reshape(n, c, -1)
            k = win.argmax(axis=2)  # numpy's argmax is the first maximum, row-major
            top[:, :, i, j] = np.take_along_axis(win, k[..., None], 2)[..., 0]
            mask[:, :, i, j] = (h0 + k // (w1 - w0)) * w + w0 + k % (w1 - w0)
    return top, mask


POOLS = [  # (kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w): MRFNet's CRP pool first
    (5, 5, 1, 1, 2, 2), (3, 3, 2, 2, 1, 1), (2, 2, 2, 2, 0, 0), (3, 2, 2, 1, 1, 0), (1, 4, 1, 3, 0, 1)]


@pytest.mark.parametrize("height,width", [(13, 11), (6, 41)])
@pytest.mark.parametrize("kh,kw,sh,sw,ph,pw", POOLS)
def test_max_pooling_gives_the_direct_loops_values_and_argmax_with_ties(tmp_path, kh, kw, sh, sw, ph, pw,
                                                                         height, width):
    """Small maps are mostly clipped windows; the wide one runs the vectorised inner sweep."""
    rng = np.random.default_rng(kh * 100 + kw * 10 + sh + width)
    # Few distinct values: most windows hold ties, which is where an argmax order shows.
    x = rng.integers(-2, 3, (2, 3, height, width)).astype(np.float32)
    net = _net(tmp_path, f"""input: "data" input_shape {{ dim: 2 dim: 3 dim: {height} dim: {width} }}
force_backward: true
layer {{ name: "pool" type: "Pooling" bottom: "data" top: "pool" top: "mask"
  pooling_param {{ pool: MAX kernel_h: {kh} kernel_w: {kw} stride_h: {sh} stride_w: {sw}
                   pad_h: {ph} pad_w: {pw} }} }}
""")
    net.blobs["data"].data[...] = x
    net.forward()
    top, mask = _direct_max_pool(x, kh, kw, sh, sw, ph, pw)
    assert net.blobs["pool"].data.shape == top.shape
    np.testing.assert_array_equal(net.blobs["pool"].data, top)
    np.testing.assert_array_equal(net.blobs["mask"].data.astype(np.int64), mask)


def test_max_pooling_of_continuous_values_matches_the_direct_loop(tmp_path):
    x = np.random.default_rng(3).standard_normal((1, 4, 37, 53)).astype(np.float32)
    net = _net(tmp_path, """input: "data" input_shape { dim: 1 dim: 4 dim: 37 dim: 53 }
layer { name: "pool" type: "Pooling" bottom: "data" top: "pool" top: "mask"
  pooling_param { pool: MAX kernel_size: 5 stride: 1 pad: 2 } }
""")
    net.blobs["data"].data[...] = x
    net.forward()
    top, mask = _direct_max_pool(x, 5, 5, 1, 1, 2, 2)
    np.testing.assert_array_equal(net.blobs["pool"].data, top)
    np.testing.assert_array_equal(net.blobs["mask"].data.astype(np.int64), mask)


def test_max_pooling_backward_routes_each_gradient_to_the_first_maximum(tmp_path):
    rng = np.random.default_rng(7)
    x = rng.integers(0, 3, (1, 2, 9, 9)).astype(np.float32)
    net = _net(tmp_path, """input: "data" input_shape { dim: 1 dim: 2 dim: 9 dim: 9 }
force_backward: true
layer { name: "pool" type: "Pooling" bottom: "data" top: "pool"
  pooling_param { pool: MAX kernel_size: 5 stride: 1 pad: 2 } }
""")
    net.blobs["data"].data[...] = x
    net.forward()
    g = rng.standard_normal(net.blobs["pool"].data.shape).astype(np.float32)
    net.blobs["pool"].diff[...] = g
    net.backward()
    _, mask = _direct_max_pool(x, 5, 5, 1, 1, 2, 2)
    expect = np.zeros_like(x)
    for c in range(2):
        np.add.at(expect[0, c].reshape(-1), mask[0, c].reshape(-1), g[0, c].reshape(-1))
    np.testing.assert_allclose(net.blobs["data"].diff, expect, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- 0001: shared im2col buffer

# Convolutions whose im2col buffers all differ in size, a deconvolution (col2im) and a 1x1.
_CONV_CHAIN = """input: "data" input_shape {{ dim: 2 dim: 3 dim: 12 dim: 12 }}
force_backward: true
layer {{ name: "c1" type: "Convolution" bottom: "data" top: "c1"
  convolution_param {{ num_output: 4 kernel_size: 3 pad: 1 {f} }} }}
layer {{ name: "c2" type: "Convolution" bottom: "c1" top: "c2"
  convolution_param {{ num_output: 5 kernel_size: 5 stride: 2 pad: 2 {f} }} }}
layer {{ name: "c3" type: "Deconvolution" bottom: "c2" top: "c3"
  convolution_param {{ num_output: 3 kernel_size: 4 stride: 2 pad: 1 {f} }} }}
layer {{ name: "c4" type: "Convolution" bottom: "c3" top: "c4"
  convolution_param {{ num_output: 2 kernel_size: 1 {f} }} }}
layer {{ name: "c5" type: "Convolution" bottom: "c4" top: "c5"
  convolution_param {{ num_output: 2 kernel_size: 3 pad: 1 {f} }} }}
"""
_FILLERS = 'weight_filler { type: "gaussian" std: 0.3 } bias_filler { type: "gaussian" std: 0.1 }'


def _np_conv(x, w, b, stride, pad):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    out = np.zeros((n, o, oh, ow))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j])
    return out + b[None, :, None, None]


def _np_deconv(x, w, b, stride, pad):
    n, c, h, wd = x.shape
    _, o, kh, kw = w.shape
    full = np.zeros((n, o, (h - 1) * stride + kh, (wd - 1) * stride + kw))
    for i in range(kh):
        for j in range(kw):
            full[:, :, i:i + stride * h:stride, j:j + stride * wd:stride] += \
                np.einsum("nchw,co->nohw", x, w[:, :, i, j])
    return full[:, :, pad:full.shape[2] - pad, pad:full.shape[3] - pad] + b[None, :, None, None]


def _np_chain(net, x):
    p = {k: (v[0].data.astype(np.float64), v[1].data.astype(np.float64)) for k, v in net.params.items()}
    y = _np_conv(x, *p["c1"], 1, 1)
    y = _np_conv(y, *p["c2"], 2, 2)
    y = _np_deconv(y, *p["c3"], 2, 1)
    y = _np_conv(y, *p["c4"], 1, 0)
    return _np_conv(y, *p["c5"], 1, 1)


def _forward_backward(net, x, g):
    net.blobs["data"].data[...] = x
    net.forward()
    net.blobs["c5"].diff[...] = g  # the last layer of both chains is c5
    for p in net.params.values():
        for blob in p:
            blob.diff[...] = 0
    net.backward()
    return (net.blobs["c5"].data.copy(), net.blobs["data"].diff.copy(),
            {k: [b.diff.copy() for b in v] for k, v in net.params.items()})


def test_convolution_chain_forward_matches_numpy(tmp_path):
    net = _net(tmp_path, _CONV_CHAIN.format(f=_FILLERS))
    x = np.random.default_rng(0).standard_normal((2, 3, 12, 12)).astype(np.float32)
    net.blobs["data"].data[...] = x
    net.forward()
    np.testing.assert_allclose(net.blobs["c5"].data, _np_chain(net, x.astype(np.float64)),
                               rtol=1e-4, atol=1e-4)


def test_convolution_chain_gradients_match_finite_differences(tmp_path):
    """Backward refills the shared buffer in every layer (weight gradient, then col2im): the
    gradients of the first and the middle layers would be wrong if a later layer's columns
    were left in it."""
    net = _net(tmp_path, _CONV_CHAIN.format(f=_FILLERS))
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 12, 12)).astype(np.float32)
    r = rng.standard_normal(net.blobs["c5"].data.shape)
    net.blobs["data"].data[...] = x

    def loss():
        return float((_np_chain(net, x.astype(np.float64)) * r).sum())

    _, data_grad, _ = _forward_backward(net, x, r)
    eps = 1e-2
    for layer in ("c1", "c2", "c3", "c5"):
        w = net.params[layer][0]
        for idx in [(0, 0, 0, 0), tuple(s - 1 for s in w.data.shape)]:
            analytic = float(w.diff[idx])
            numeric = central_difference(w.data, idx, loss, eps)
            assert abs(analytic - numeric) <= 1e-3 * max(1.0, abs(numeric)), (layer, idx, analytic, numeric)
    # and the input gradient at one pixel, through every layer's col2im
    for idx in [(0, 0, 5, 5), (1, 2, 0, 11)]:
        xp, xm = x.copy().astype(np.float64), x.copy().astype(np.float64)
        xp[idx] += eps
        xm[idx] -= eps
        numeric = float(((_np_chain(net, xp) - _np_chain(net, xm)) * r).sum() / (2 * eps))
        assert abs(data_grad[idx] - numeric) <= 1e-3 * max(1.0, abs(numeric)), (idx, data_grad[idx], numeric)


_RSS_PROBE = """
import os, sys
os.environ["GLOG_minloglevel"] = "2"
import numpy as np, caffe
from mrfnet.sysmem import status_bytes

net = caffe.Net(sys.argv[1], caffe.TEST)
before = status_bytes("RssAnon")
net.forward()
print(status_bytes("RssAnon") - before)
"""


def test_forward_memory_does_not_grow_with_the_number_of_convolutions(tmp_path):
    """8 convolutions 3x3 16->16 at 384x384: each im2col buffer is 144 x 147456 floats (85 MB),
    each top 16 x 147456 floats (9.4 MB). A buffer per layer would need about 755 MB of them."""
    side, layers = 384, 8
    text = f'input: "data" input_shape {{ dim: 1 dim: 16 dim: {side} dim: {side} }}\n'
    bottom = "data"
    for i in range(layers):
        text += (f'layer {{ name: "c{i}" type: "Convolution" bottom: "{bottom}" top: "c{i}"\n'
                 f'  convolution_param {{ num_output: 16 kernel_size: 3 pad: 1 }} }}\n')
        bottom = f"c{i}"
    path = tmp_path / "deep.prototxt"
    path.write_text(text)
    proc = subprocess.run([sys.executable, "-c", _RSS_PROBE, str(path)], capture_output=True,
                          text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    grown = int(proc.stdout.split()[-1])
    col = 16 * 9 * side * side * 4
    tops = layers * 16 * side * side * 4
    assert grown > tops  # the measurement sees the forward's allocations at all
    assert grown < tops + 2 * col, (grown, tops, col)


# ---------------------------------------------------------------- 0004: batch-wide GEMM, OpenMP

# 30x30 input: c1 has 900 output pixels, so 5 images fill one product (4096 columns) and a
# batch of 7 runs as 5 + 2; the smaller maps after it take all 7 at once. A 1x1 convolution
# and a deconvolution take the batched path too.
_BATCH_CHAIN = """input: "data" input_shape {{ dim: {n} dim: 3 dim: 30 dim: 30 }}
force_backward: true
layer {{ name: "c1" type: "Convolution" bottom: "data" top: "c1"
  convolution_param {{ num_output: 6 kernel_size: 3 pad: 1 {f} }} }}
layer {{ name: "r1" type: "ReLU" bottom: "c1" top: "c1" }}
layer {{ name: "c2" type: "Convolution" bottom: "c1" top: "c2"
  convolution_param {{ num_output: 8 kernel_size: 3 stride: 2 pad: 1 {f} }} }}
layer {{ name: "p2" type: "Pooling" bottom: "c2" top: "p2"
  pooling_param {{ pool: MAX kernel_size: 5 stride: 1 pad: 2 }} }}
layer {{ name: "c3" type: "Convolution" bottom: "p2" top: "c3"
  convolution_param {{ num_output: 5 kernel_size: 1 {f} }} }}
layer {{ name: "d4" type: "Deconvolution" bottom: "c3" top: "d4"
  convolution_param {{ num_output: 4 kernel_size: 4 stride: 2 pad: 1 {f} }} }}
layer {{ name: "c5" type: "Convolution" bottom: "d4" top: "c5"
  convolution_param {{ num_output: 3 kernel_size: 3 pad: 1 {f} }} }}
"""


def test_batched_products_give_what_image_by_image_products_give(tmp_path):
    n = 7
    batch = _net(tmp_path, _BATCH_CHAIN.format(n=n, f=_FILLERS), "batch.prototxt")
    single = _net(tmp_path, _BATCH_CHAIN.format(n=1, f=_FILLERS), "single.prototxt")
    for name, blobs in batch.params.items():
        for i, blob in enumerate(blobs):
            single.params[name][i].data[...] = blob.data
    rng = np.random.default_rng(11)
    x = rng.standard_normal((n, 3, 30, 30)).astype(np.float32)
    g = rng.standard_normal(batch.blobs["c5"].data.shape).astype(np.float32)
    out, dx, grads = _forward_backward(batch, x, g)
    sums = {k: [np.zeros_like(d) for d in v] for k, v in grads.items()}
    for i in range(n):
        o1, dx1, g1 = _forward_backward(single, x[i:i + 1], g[i:i + 1])
        np.testing.assert_allclose(out[i:i + 1], o1, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(dx[i:i + 1], dx1, rtol=1e-5, atol=1e-5)
        for k in sums:
            for j, d in enumerate(g1[k]):
                sums[k][j] += d
    for k in sums:
        for j, d in enumerate(sums[k]):
            scale = max(1.0, float(np.abs(d).max()))
            np.testing.assert_allclose(grads[k][j], d, rtol=1e-4, atol=1e-4 * scale, err_msg=f"{k}[{j}]")


def test_parallel_pooling_planes_match_the_direct_loop(tmp_path):
    """4 x 8 planes of 48x48: large enough that the planes run in parallel."""
    rng = np.random.default_rng(5)
    x = rng.integers(-3, 4, (4, 8, 48, 48)).astype(np.float32)
    net = _net(tmp_path, """input: "data" input_shape { dim: 4 dim: 8 dim: 48 dim: 48 }
force_backward: true
layer { name: "pool" type: "Pooling" bottom: "data" top: "pool" top: "mask"
  pooling_param { pool: MAX kernel_size: 5 stride: 1 pad: 2 } }
layer { name: "pool2" type: "Pooling" bottom: "data" top: "pool2"
  pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 } }
""")
    net.blobs["data"].data[...] = x
    net.forward()
    for blob, args in (("pool", (5, 5, 1, 1, 2, 2)), ("pool2", (3, 3, 2, 2, 1, 1))):
        top, mask = _direct_max_pool(x, *args)
        np.testing.assert_array_equal(net.blobs[blob].data, top)
        if blob == "pool":
            np.testing.assert_array_equal(net.blobs["mask"].data.astype(np.int64), mask)
    # backward through the parallel scatter: each gradient lands on its window's first maximum
    g = rng.standard_normal(net.blobs["pool2"].data.shape).astype(np.float32)
    net.blobs["pool"].diff[...] = 0
    net.blobs["pool2"].diff[...] = g
    net.backward()
    _, mask = _direct_max_pool(x, 3, 3, 2, 2, 1, 1)
    expect = np.zeros_like(x)
    for i in range(4):
        for c in range(8):
            np.add.at(expect[i, c].reshape(-1), mask[i, c].reshape(-1), g[i, c].reshape(-1))
    np.testing.assert_allclose(net.blobs["data"].diff, expect, rtol=1e-6, atol=1e-6)


_MAPS_PROBE = """
import caffe
print(open("/proc/self/maps").read())
"""


def test_caffe_runs_on_the_openmp_runtime_and_openblas_openmp_build():
    """One thread pool for BLAS and Caffe's own loops: libgomp, and OpenBLAS's OpenMP build
    (found through libcaffe's run path, ahead of Debian's default pthread build)."""
    proc = subprocess.run([sys.executable, "-c", _MAPS_PROBE], capture_output=True, text=True,
                          cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    libs = {line.split()[-1] for line in proc.stdout.splitlines() if ".so" in line}
    assert any("libgomp" in lib for lib in libs), sorted(libs)
    # Debian's OpenBLAS builds (numpy's wheel brings its own, under site-packages)
    blas = sorted(lib for lib in libs if "libopenblas" in lib and lib.startswith("/usr/lib"))
    assert blas and all("openblas-openmp" in lib for lib in blas), blas
