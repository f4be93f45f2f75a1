"""A strided ConvTranspose written as Conv + DepthToSpace (the "sub-pixel" form), exactly.

Why: ONNX Runtime has no int8 kernel for ConvTranspose, so in the int8 model each of MRFNet's
three deconvolutions (kernel 4, stride 2, pad 1) ran in fp32 between a DequantizeLinear and a
QuantizeLinear, and at 1280x720 they took about 60% of the int8 forward (docs/performance.md,
"int8"). Every output pixel of a stride-s transposed convolution belongs to one of s x s phases,
and each phase is an ordinary convolution of the input with a subset of the kernel's taps; one
Conv with s*s*C_out output channels computes all phases, and DepthToSpace (CRD) interleaves
them. The Conv is quantized like every other one.

    model, names = to_subpixel(onnx.load(path))   # every ConvTranspose it can rewrite, in place

Only group 1, dilation 1, no output_padding, explicit pads, and output size s * input size
(kernel - pads = stride: Caffe's upsampling deconvolutions) are rewritten; others are left.
"""
import numpy as np


def fits(kind, want, have):
    """True when `have` (a "<layer>.subpixel_weight" or "_bias" initializer's shape) is the
    sub-pixel form of a deconvolution whose own weight or bias shape is `want`
    (C_in x C_out x kh x kw, or C_out): C_out * s^2 output channels for some stride s > 1."""
    want, have = tuple(want), tuple(have)
    if kind == "bias":
        return len(have) == 1 and len(want) == 1 and _square_multiple(have[0], want[0])
    return (len(have) == 4 and len(want) == 4 and have[1] == want[0]
            and _square_multiple(have[0], want[1]))


def _square_multiple(n, c):
    s = int(round((n / c) ** 0.5)) if c and n % c == 0 else 0
    return s > 1 and s * s * c == n


def _attrs(node):
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def phase_taps(kernel, stride, pad):
    """[(phase, kernel tap, input offset)] of one axis: output s*m + phase receives
    x[m + offset] * w[tap]."""
    return [(a, k, (a + pad - k) // stride) for a in range(stride) for k in range(kernel)
            if (a + pad - k) % stride == 0]


def subpixel_weights(w, b, stride, pads):
    """(weight, bias, conv pads) of the Conv whose DepthToSpace (CRD, blocksize s) equals
    ConvTranspose(w, b) with square stride `stride` and pads (top, left, bottom, right);
    w is C_in x C_out x kh x kw."""
    cin, cout, kh, kw = w.shape
    s = stride
    ty, tx = phase_taps(kh, s, pads[0]), phase_taps(kw, s, pads[1])
    dy = [d for _, _, d in ty]
    dx = [d for _, _, d in tx]
    lo_y, lo_x = min(dy), min(dx)
    wc = np.zeros((cout, s, s, cin, max(dy) - lo_y + 1, max(dx) - lo_x + 1), w.dtype)
    for a, ky, oy in ty:
        for c, kx, ox in tx:
            wc[:, a, c, :, oy - lo_y, ox - lo_x] = w[:, :, ky, kx].T
    bias = np.repeat(np.zeros(cout, w.dtype) if b is None else b, s * s)
    conv_pads = [-lo_y, -lo_x, max(dy), max(dx)]
    return wc.reshape(cout * s * s, cin, *wc.shape[-2:]), bias.astype(w.dtype), conv_pads


def _rewritable(attrs, weight):
    strides = attrs.get("strides", [1, 1])
    pads = attrs.get("pads", [0, 0, 0, 0])
    kernel = attrs.get("kernel_shape", list(weight.shape[2:]))
    return (weight.ndim == 4 and len(set(strides)) == 1 and strides[0] > 1
            and attrs.get("group", 1) == 1 and set(attrs.get("dilations", [1, 1])) == {1}
            and not any(attrs.get("output_padding", [])) and "output_shape" not in attrs
            and attrs.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")
            and pads[0] == pads[2] and pads[1] == pads[3] and all(p >= 0 for p in pads)
            and all(k - 2 * p == strides[0] for k, p in zip(kernel, pads[:2])))


def to_subpixel(model):
    """Rewrite, in `model` (an onnx ModelProto), every ConvTranspose whose weights are
    initializers and whose form allows it; returns the model and the rewritten nodes' names."""
    import onnx
    from onnx import helper, numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    nodes, done = [], []
    for node in model.graph.node:
        if node.op_type != "ConvTranspose" or node.input[1] not in inits or (
                len(node.input) > 2 and node.input[2] and node.input[2] not in inits):
            nodes.append(node)
            continue
        attrs = _attrs(node)
        w = numpy_helper.to_array(inits[node.input[1]])
        if not _rewritable(attrs, w):
            nodes.append(node)
            continue
        b = (numpy_helper.to_array(inits[node.input[2]])
             if len(node.input) > 2 and node.input[2] else None)
        s = attrs["strides"][0]
        wc, bc, pads = subpixel_weights(w, b, s, attrs.get("pads", [0, 0, 0, 0]))
        name = node.name or node.output[0]
        wn, bn, mid = f"{name}.subpixel_weight", f"{name}.subpixel_bias", f"{node.output[0]}/phases"
        # (the int8 check of inference.onnx_export.read_checked_onnx knows these names: fits())
        model.graph.initializer.extend([numpy_helper.from_array(wc, wn),
                                        numpy_helper.from_array(bc, bn)])
        nodes.append(helper.make_node("Conv", [node.input[0], wn, bn], [mid], f"{name}/phases",
                                      kernel_shape=list(wc.shape[2:]), pads=pads))
        nodes.append(helper.make_node("DepthToSpace", [mid], list(node.output), name,
                                      blocksize=s, mode="CRD"))
        done.append(name)
    if done:
        used = {i for n in nodes for i in n.input}
        keep = [t for t in model.graph.initializer if t.name in used]
        del model.graph.initializer[:]
        model.graph.initializer.extend(keep)
        del model.graph.node[:]
        model.graph.node.extend(nodes)
        onnx.checker.check_model(model)
    return model, done
