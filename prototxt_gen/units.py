"""Unit builders on pycaffe's NetSpec: encoder RCU pairs, fusion unit, CRP, MRF unit, paths.

Each function adds layers to a NetSpec `n` under the paper's names (topology.conv_rows) and
returns the Top the next unit consumes. Naming of the glue layers (ReLU, sums, concat) is
documented in docs/architecture.md. ReLUs are in place, so a unit always hands on the ReLU's
Top, never the convolution's (which would silently be the same, rectified, blob anyway).
"""
from caffe import layers as L, params as P

from . import topology as T

WEIGHT_FILLER = {"type": "xavier"}
BIAS_FILLER = {"type": "constant", "value": 0.0}
# The prediction heads start near zero, so an untrained net starts near the identity (residual).
PRED_FILLER = {"type": "gaussian", "std": 1e-3}


def conv(n, bottom, row, filler=None):
    """Convolution (or Deconvolution) from a ConvRow, plus an in-place ReLU when row.relu."""
    cp = {"num_output": row.outputs, "stride": row.stride, "pad": row.pad,
          "weight_filler": filler or WEIGHT_FILLER, "bias_filler": BIAS_FILLER}
    if row.kernel[0] == row.kernel[1]:
        cp["kernel_size"] = row.kernel[0]
    else:
        cp["kernel_h"], cp["kernel_w"] = row.kernel
    layer = L.Deconvolution if row.deconv else L.Convolution
    n[row.name] = layer(bottom, convolution_param=cp)
    if not row.relu:
        return n[row.name]
    n[row.name + "_relu"] = L.ReLU(n[row.name], in_place=True)
    return n[row.name + "_relu"]


def add(n, name, a, b):
    n[name] = L.Eltwise(a, b, operation=P.Eltwise.SUM)
    return n[name]


def encoder(n, data, rows, paths):
    """Encoder stages 0..P-1; returns [b at 1/1, b at 1/2, ...] (outputs of Conv(2s+2))."""
    feats, x = [], data
    for s in range(paths):
        x = conv(n, x, rows[f"Conv{2 * s + 1}"])
        x = conv(n, x, rows[f"Conv{2 * s + 2}"])
        feats.append(x)
    return feats


def fusion(n, k, b, up, rows, residual):
    """Eq. (1) c_k = b_k (+) up_k, then conv_r{k}_1; residual fusion unit (eq. 2) adds up_k."""
    c = b
    if up is not None:
        n[f"concat_r{k}"] = L.Concat(b, up, axis=1)
        c = n[f"concat_r{k}"]
    x = conv(n, c, rows[f"conv_r{k}_1"])
    if residual and up is not None:
        x = add(n, f"fuse_r{k}", x, up)
    return x


def crp(n, k, x, rows):
    """Chained residual pooling, 2 stages: x + conv1(pool1(x)) + conv2(pool2(conv1(pool1(x))))."""
    top, out = x, x
    for i in (1, 2):
        n[f"crp_r{k}_pool{i}"] = L.Pooling(top, pool=P.Pooling.MAX, kernel_size=5, stride=1, pad=2)
        top = conv(n, n[f"crp_r{k}_pool{i}"], rows[f"crp_r{k}_conv{i}"])
        out = add(n, f"crp_r{k}_sum{i}", out, top)
    return out


def mrf_unit(n, k, x, rows, residual):
    """MRF unit: plain chain m4(m3(m2(m1 x))); residual: eq. (3) y = f2f1(x) + f4f3f2f1(x), l = y + x."""
    h = conv(n, x, rows[f"conv_r{k}_m1"])
    h2 = conv(n, h, rows[f"conv_r{k}_m2"])
    h = conv(n, h2, rows[f"conv_r{k}_m3"])
    h4 = conv(n, h, rows[f"conv_r{k}_m4"])
    if not residual:
        return h4
    y = add(n, f"mrf_r{k}", h2, h4)
    return add(n, f"l_r{k}", y, x)  # remote residual connection around the path's unit


def downsample(n, name, blob, factor):
    """Average pooling by `factor` (kernel = stride): the image at a path's scale."""
    if factor == 1:
        return blob
    n[name] = L.Pooling(blob, pool=P.Pooling.AVE, kernel_size=factor, stride=factor)
    return n[name]


def prediction(n, k, l, data, rows, paths, name):
    """pred_r{k} = conv_r{k}_pred(l_k) + image at the path's scale: the path learns a residual."""
    res = conv(n, l, rows[f"conv_r{k}_pred"], filler=PRED_FILLER)
    img = downsample(n, f"img_r{k}", data, 2 ** T.path_scale(k, paths))
    return add(n, name, res, img)


def refinement(n, data, variant, paths, pred_names=None):
    """Encoder + P refinement paths with prediction heads.

    pred_names maps path k -> name of its prediction blob (default: every path, "pred_r{k}");
    paths left out get no head (the deploy net keeps only the finest). Returns {k: pred Top}.
    """
    v = T.check_variant(variant)
    rows = T.conv_rows(variant, paths)
    if pred_names is None:
        pred_names = {k: f"pred_r{k}" for k in range(1, paths + 1)}
    feats = encoder(n, data, rows, paths)
    up, preds = None, {}
    for k in range(1, paths + 1):
        b = feats[T.path_scale(k, paths)]
        x = fusion(n, k, b, up, rows, v.residual)
        x = crp(n, k, x, rows)
        l = mrf_unit(n, k, x, rows, v.residual)
        if k in pred_names:
            preds[k] = prediction(n, k, l, data, rows, paths, pred_names[k])
        if k < paths:
            up = conv(n, l, rows[f"deconv{k}"])
    return preds
