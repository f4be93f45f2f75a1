"""mrfnet.netfile against Caffe itself: the defaults it fills in are caffe.proto's, its output
sizes are the blob shapes pycaffe builds, and its own parser reads every committed prototxt to
the same layer specs as Caffe's protobuf."""
from itertools import product
from pathlib import Path

import caffe
import pytest
from caffe.proto import caffe_pb2

from inference.onnx_export import NetGraph
from mrfnet import netfile as NF

REPO = Path(__file__).resolve().parents[1]
COMMITTED = sorted(p for p in (REPO / "models").rglob("*.prototxt") if p.name != "solver.prototxt")

# Layers with nothing but what Caffe requires: everything else is a default.
BARE = """
name: "bare"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 2 dim: 9 dim: 8 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 2 kernel_size: 3 } }
layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool" pooling_param { kernel_size: 2 } }
layer { name: "relu" type: "ReLU" bottom: "pool" top: "pool" }
layer { name: "sum" type: "Eltwise" bottom: "pool" bottom: "pool" top: "sum" }
layer { name: "cat" type: "Concat" bottom: "sum" bottom: "pool" top: "cat" }
layer { name: "cut" type: "Slice" bottom: "cat" top: "cut1" top: "cut2" }
layer { name: "pow" type: "Power" bottom: "cut1" top: "pow" }
layer { name: "scale" type: "Scale" bottom: "pow" top: "scale" param { } }
layer { name: "loss" type: "EuclideanLoss" bottom: "scale" bottom: "cut2" top: "loss"
        include { phase: TRAIN } }
"""


def _default(message, field):
    return getattr(caffe_pb2, message).DESCRIPTOR.fields_by_name[field].default_value


def _enum_default(message, field):
    fd = getattr(caffe_pb2, message).DESCRIPTOR.fields_by_name[field]
    return fd.enum_type.values_by_number[fd.default_value].name


def test_defaults_are_caffe_protos():
    specs = {s.name: s for s in NF.layer_specs(NF.parse_text(BARE))}
    conv, pool = specs["conv"], specs["pool"]
    assert conv.bias_term == _default("ConvolutionParameter", "bias_term")
    assert conv.group == _default("ConvolutionParameter", "group")
    assert conv.axis == _default("ConvolutionParameter", "axis")
    assert pool.pool == _enum_default("PoolingParameter", "pool")
    assert pool.stride == (_default("PoolingParameter", "stride"),) * 2
    assert pool.pad == (_default("PoolingParameter", "pad"),) * 2
    assert pool.global_pooling == _default("PoolingParameter", "global_pooling")
    assert pool.ceil_mode == _default("PoolingParameter", "ceil_mode")
    assert specs["relu"].negative_slope == _default("ReLUParameter", "negative_slope")
    assert specs["sum"].operation == _enum_default("EltwiseParameter", "operation")
    assert specs["sum"].coeff == []
    assert specs["cat"].axis == _default("ConcatParameter", "axis")
    assert specs["cut"].axis == _default("SliceParameter", "axis")
    assert (specs["pow"].power, specs["pow"].scale, specs["pow"].shift) == tuple(
        _default("PowerParameter", k) for k in ("power", "scale", "shift"))
    scale = specs["scale"]
    assert (scale.axis, scale.num_axes, scale.bias_term) == tuple(
        _default("ScaleParameter", k) for k in ("axis", "num_axes", "bias_term"))
    assert scale.params == [{"name": "", "lr_mult": _default("ParamSpec", "lr_mult"),
                             "decay_mult": _default("ParamSpec", "decay_mult")}]
    assert specs["loss"].loss_weight == [1.0]  # Caffe's loss layers weigh their first top 1
    assert specs["conv"].loss_weight == []
    assert specs["loss"].in_phase("TRAIN") and not specs["loss"].in_phase("TEST")
    assert specs["conv"].in_phase("TEST")
    # the repeated convolution fields have no proto default: Caffe's code uses 1 / 0 / 1
    assert (conv.stride, conv.pad, conv.dilation) == ((1, 1), (0, 0), (1, 1))


def test_bare_net_specs_and_shapes_match_pycaffe(tmp_path):
    path = tmp_path / "bare.prototxt"
    path.write_text(BARE)
    assert NF.read_specs(path) == NF.read_specs(path, with_caffe_pb2=True)
    net = caffe.Net(str(path), caffe.TRAIN)
    conv, pool = (s for s in NF.read_specs(path) if s.type in ("Convolution", "Pooling"))
    assert net.blobs["conv"].data.shape[2:] == tuple(
        NF.conv_size(n, *a) for n, *a in zip((9, 8), conv.kernel, conv.stride, conv.pad,
                                             conv.dilation))
    assert net.blobs["pool"].data.shape[2:] == NF.pooled_hw(
        net.blobs["conv"].data.shape[2:], pool.kernel, pool.stride, pool.pad, pool.ceil_mode)
    assert net.params["scale"][0].data.shape == (2,) and len(net.params["scale"]) == 1


def _sizes_net(height, width):
    """A deploy net of many Pooling, Convolution and Deconvolution layers on one input, each
    with other settings (the pad < kernel and output >= 1 that Caffe checks hold)."""
    layers = [f'layer {{ name: "data" type: "Input" top: "data" '
              f'input_param {{ shape {{ dim: 1 dim: 1 dim: {height} dim: {width} }} }} }}']
    for i, (k, s, ceil) in enumerate(product((1, 2, 3, 5), (1, 2, 3), (True, False))):
        for p in range(k):
            layers.append(f'layer {{ name: "pool{i}_{p}" type: "Pooling" bottom: "data" '
                          f'top: "pool{i}_{p}" pooling_param {{ pool: MAX kernel_size: {k} '
                          f'stride: {s} pad: {p} ceil_mode: {str(ceil).lower()} }} }}')
    layers.append('layer { name: "pool_hw" type: "Pooling" bottom: "data" top: "pool_hw" '
                  'pooling_param { kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 3 pad_h: 1 pad_w: 0 } }')
    layers.append('layer { name: "pool_global" type: "Pooling" bottom: "data" '
                  'top: "pool_global" pooling_param { pool: AVE global_pooling: true } }')
    for i, (k, s, p, d) in enumerate(product((1, 3, 5), (1, 2, 3), (0, 1, 2), (1, 2))):
        layers.append(f'layer {{ name: "conv{i}" type: "Convolution" bottom: "data" '
                      f'top: "conv{i}" convolution_param {{ num_output: 1 kernel_size: {k} '
                      f'stride: {s} pad: {p} dilation: {d} }} }}')
    layers.append('layer { name: "conv_hw" type: "Convolution" bottom: "data" top: "conv_hw" '
                  'convolution_param { num_output: 1 kernel_size: 3 kernel_size: 1 stride: 2 '
                  'stride: 1 pad: 1 pad: 0 } }')
    for i, (k, s, p) in enumerate(product((2, 3, 4), (1, 2), (0, 1))):
        layers.append(f'layer {{ name: "deconv{i}" type: "Deconvolution" bottom: "data" '
                      f'top: "deconv{i}" convolution_param {{ num_output: 1 kernel_size: {k} '
                      f'stride: {s} pad: {p} }} }}')
    return "\n".join(layers) + "\n"


@pytest.mark.parametrize("height,width", [(13, 10), (16, 17), (11, 9)])
def test_output_sizes_are_pycaffes_blob_shapes(tmp_path, height, width):
    path = tmp_path / "sizes.prototxt"
    path.write_text(_sizes_net(height, width))
    net = caffe.Net(str(path), caffe.TEST)
    want = {name: tuple(blob.data.shape) for name, blob in net.blobs.items()}
    got = NetGraph(path).shapes(height, width)   # netfile's specs and size rules
    assert got == {b: want[b] for b in got}       # (Caffe adds the Split blobs of "data")
    assert len(got) > 130
    assert NF.read_specs(path) == NF.read_specs(path, with_caffe_pb2=True)


def test_pooled_size_keeps_the_last_window_inside_the_padded_image():
    # 5 wide, kernel 2, stride 2, pad 1: ceil((5 + 2 - 2) / 2) + 1 = 4, but window 4 would start
    # at 3 * 2 - 1 = 5, in the bottom/right padding only: Caffe drops it
    assert NF.pooled_size(5, 2, 2, 1) == 3
    assert NF.pooled_size(5, 2, 2, 0) == 3 and NF.pooled_size(5, 2, 2, 0, ceil_mode=False) == 2
    # Caffe checks both axes once either pads: width 9, kernel 2, stride 3, pad 0 gives 4
    # windows unpadded, but 3 beside a padded height (window 4 starts at 9, past the image)
    assert NF.pooled_hw((9, 9), (3, 2), (2, 3), (0, 0)) == (4, 4)
    assert NF.pooled_hw((9, 9), (3, 2), (2, 3), (1, 0)) == (5, 3)


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: str(p.relative_to(REPO)))
def test_committed_prototxt_reads_the_same_with_and_without_caffe_pb2(path):
    own = NF.read_specs(path)
    assert own and own == NF.read_specs(path, with_caffe_pb2=True)
    assert [s.name for s in own] == [l.name for l in NF.read_message(path).layer]


def test_text_that_does_not_parse_is_a_netfile_error():
    with pytest.raises(NF.NetFileError, match="not closed"):
        NF.parse_text('layer { name: "a"')
    with pytest.raises(NF.NetFileError, match="no kernel_size"):
        NF.layer_spec(NF.parse_text('name: "c" type: "Convolution" convolution_param { }'))
    with pytest.raises(NF.UnsupportedNetError, match="only 2-D"):
        NF.layer_spec(NF.parse_text('name: "c" type: "Convolution" '
                                    'convolution_param { kernel_size: 1 kernel_size: 2 '
                                    'kernel_size: 3 }'))
