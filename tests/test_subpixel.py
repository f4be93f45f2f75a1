"""inference.subpixel: a strided ConvTranspose rewritten as Conv + DepthToSpace gives the same
output as ONNX Runtime's own ConvTranspose, and forms it cannot rewrite are left alone."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from inference.subpixel import fits, phase_taps, to_subpixel


def _deconv_model(cin, cout, kernel, stride, pads, group=1, bias=True, **attrs):
    rng = np.random.default_rng(sum(kernel) + stride + cin)
    w = rng.standard_normal((cin, cout // group, *kernel)).astype(np.float32)
    inits = [numpy_helper.from_array(w, "up.weight")]
    ins = ["x", "up.weight"]
    if bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(cout).astype(np.float32),
                                             "up.bias"))
        ins.append("up.bias")
    node = helper.make_node("ConvTranspose", ins, ["y"], "up", kernel_shape=list(kernel),
                            strides=[stride, stride], pads=pads, group=group, **attrs)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, None, None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, cout, None, None])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model, x):
    return ort.InferenceSession(model.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(["y"], {"x": x})[0]


def test_the_phases_of_caffes_upsampling_deconvolution():
    """kernel 4, stride 2, pad 1 (MRFNet's deconv1-3): even outputs take taps 1 and 3 of
    x[m] and x[m-1], odd ones taps 0 and 2 of x[m+1] and x[m] (worked out by hand)."""
    assert sorted(phase_taps(4, 2, 1)) == [(0, 1, 0), (0, 3, -1), (1, 0, 1), (1, 2, 0)]


@pytest.mark.parametrize("cin,cout,kernel,stride,pads,bias", [
    (8, 4, (4, 4), 2, [1, 1, 1, 1], True),     # MRFNet's form
    (3, 5, (2, 2), 2, [0, 0, 0, 0], True),
    (4, 2, (3, 3), 3, [0, 0, 0, 0], False),
    (2, 3, (8, 8), 4, [2, 2, 2, 2], True),
    (5, 2, (4, 2), 2, [1, 0, 1, 0], True),     # a different form on each axis
])
def test_the_rewrite_gives_convtransposes_output(cin, cout, kernel, stride, pads, bias):
    model = _deconv_model(cin, cout, kernel, stride, pads, bias=bias)
    x = np.random.default_rng(1).standard_normal((1, cin, 7, 10)).astype(np.float32)
    want = _run(model, x)
    rewritten, done = to_subpixel(onnx.load_model_from_string(model.SerializeToString()))
    assert done == ["up"]
    assert [n.op_type for n in rewritten.graph.node] == ["Conv", "DepthToSpace"]
    assert not any(t.name == "up.weight" for t in rewritten.graph.initializer)
    got = _run(rewritten, x)
    assert got.shape == want.shape == (1, cout, 7 * stride, 10 * stride)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("kernel,stride,pads,group,extra", [
    ((4, 4), 2, [1, 1, 1, 1], 2, {}),                    # grouped
    ((3, 3), 2, [1, 1, 1, 1], 1, {}),                    # output 2H - 1, not 2H
    ((4, 4), 2, [1, 1, 1, 1], 1, {"output_padding": [1, 1]}),
    ((4, 4), 2, [1, 1, 1, 1], 1, {"dilations": [2, 2]}),
])
def test_forms_it_cannot_rewrite_are_left_alone(kernel, stride, pads, group, extra):
    model = _deconv_model(4, 4, kernel, stride, pads, group=group, **extra)
    before = model.SerializeToString()
    rewritten, done = to_subpixel(model)
    assert done == [] and rewritten.SerializeToString() == before


def test_fits_knows_the_subpixel_shapes():
    assert fits("weight", (64, 32, 4, 4), (128, 64, 3, 3))
    assert fits("bias", (32,), (128,))
    assert not fits("weight", (64, 32, 4, 4), (96, 64, 3, 3))     # 3 x C_out: not s^2
    assert not fits("weight", (64, 32, 4, 4), (128, 32, 3, 3))    # wrong C_in
    assert not fits("weight", (64, 32, 4, 4), (32, 64, 3, 3))     # stride 1
    assert not fits("bias", (32,), (33,))
