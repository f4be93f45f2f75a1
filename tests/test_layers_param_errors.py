"""Bad param_str / wiring of the Python layers fails at net construction with a message that
names the layer and says what is wrong; param_str is never eval'ed."""
import pytest

import caffe

from layers.errors import LayerParamError


def _input(name, dims):
    d = " ".join(f"dim: {x}" for x in dims)
    return f'layer {{ name: "{name}" type: "Input" top: "{name}" input_param {{ shape {{ {d} }} }} }}'


def _net(tmp_path, layer, bottoms, tops, param_str, shapes=None):
    shapes = shapes or {b: (1, 3, 4, 4) for b in bottoms}
    lines = [_input(b, shapes[b]) for b in bottoms]
    bl = " ".join(f'bottom: "{b}"' for b in bottoms)
    tl = " ".join(f'top: "{t}"' for t in tops)
    ps = param_str.replace("\\", "\\\\").replace("'", "\\'")
    lines.append(f'layer {{ name: "under_test" type: "Python" {bl} {tl} python_param {{ '
                 f'module: "layers.caffe_layers" layer: "{layer}" param_str: \'{ps}\' }} }}')
    path = tmp_path / "net.prototxt"
    path.write_text("\n".join(lines))
    return caffe.Net(str(path), caffe.TEST)


LOSS_BOTTOMS = ["p1", "p2", "t1", "t2"]
LOSS_SHAPES = {"p1": (1, 3, 2, 2), "p2": (1, 3, 4, 4), "t1": (1, 3, 2, 2), "t2": (1, 3, 4, 4)}


@pytest.mark.parametrize("param_str,match", [
    ('{"weights": [1, 2, 3]}', r"got 3 weights .* for 2 scales"),
    ('{"weights": [1]}', r"got 1 weights .* for 2 scales"),
    ('{"weights": [1, -0.5]}', r"must be >= 0"),
    ('{"weights": [0, 0]}', r"at least one weight must be > 0"),
    ('{"weights": [1, NaN]}', r"finite"),
    ('{"weights": "1, 1"}', r"got 1 weights|list of numbers|flat list"),
    ('{"weights": [1, 1]', r"cannot parse param_str"),
    ("weights=[1, 1]", r"cannot parse param_str"),
    ("[1, 1]", r"must be a JSON object"),
    ('{"weight": [1, 1]}', r"unknown param_str key\(s\) \['weight'\]"),
])
def test_loss_param_errors(tmp_path, param_str, match):
    with pytest.raises(LayerParamError, match=match) as info:
        _net(tmp_path, "ScaleRefinementLoss", LOSS_BOTTOMS, ["loss"], param_str, LOSS_SHAPES)
    assert "ScaleRefinementLoss" in str(info.value)
    assert "param_str" in str(info.value)


def test_loss_error_names_the_layer_given_in_param_str(tmp_path):
    with pytest.raises(LayerParamError, match=r"ScaleRefinementLoss 'loss_fine'.*>= 0"):
        _net(tmp_path, "ScaleRefinementLoss", LOSS_BOTTOMS, ["loss"],
             '{"name": "loss_fine", "weights": [1, -1]}', LOSS_SHAPES)


def test_python_literal_accepted_and_never_evaluated(tmp_path):
    net = _net(tmp_path, "ScaleRefinementLoss", LOSS_BOTTOMS, ["loss"],
               "{'weights': [1.0, 2]}", LOSS_SHAPES)
    assert list(net.layers[-1].weights) == [1.0, 2.0]
    marker = tmp_path / "evaluated"
    with pytest.raises(LayerParamError, match="cannot parse"):
        _net(tmp_path, "ScaleRefinementLoss", LOSS_BOTTOMS, ["loss"],
             f"__import__('pathlib').Path('{marker}').touch()", LOSS_SHAPES)
    assert not marker.exists()


def test_default_weights_are_eq5(tmp_path):
    net = _net(tmp_path, "ScaleRefinementLoss", LOSS_BOTTOMS, ["loss"], "", LOSS_SHAPES)
    assert list(net.layers[-1].weights) == [1.0, 1.0]


def test_loss_wiring_errors(tmp_path):
    with pytest.raises(LayerParamError, match="needs 2K bottoms"):
        _net(tmp_path, "ScaleRefinementLoss", ["p1", "p2", "t1"], ["loss"], "",
             {k: LOSS_SHAPES[k] for k in ("p1", "p2", "t1")})
    swapped = dict(LOSS_SHAPES, t1=(1, 3, 4, 4), t2=(1, 3, 2, 2))
    with pytest.raises(LayerParamError, match=r"scale 1: prediction shape .* differs"):
        _net(tmp_path, "ScaleRefinementLoss", LOSS_BOTTOMS, ["loss"], "", swapped)


@pytest.mark.parametrize("param_str,match", [
    ('{"variant": "matlab"}', "unknown variant 'matlab'"),
    ('{"input_order": "BRG"}', "input_order"),
    ('{"psnr_cap_db": -1}', "psnr_cap_db"),
    ('{"psnr_cap_db": "inf"}', "psnr_cap_db"),
    ('{"ssim": "matlab3d"}', "unknown param_str key"),
    ("{variant: matlab3d}", "cannot parse"),
])
def test_metric_param_errors(tmp_path, param_str, match):
    with pytest.raises(LayerParamError, match=match) as info:
        _net(tmp_path, "ImageQualityMetrics", ["pred", "label"], ["psnr", "ssim"], param_str)
    assert "ImageQualityMetrics" in str(info.value)


def test_metric_wiring_errors(tmp_path):
    with pytest.raises(LayerParamError, match="tops"):
        _net(tmp_path, "ImageQualityMetrics", ["pred", "label"], ["psnr"], "")
    with pytest.raises(LayerParamError, match="must both be N x C x H x W and equal"):
        _net(tmp_path, "ImageQualityMetrics", ["pred", "label"], ["psnr", "ssim"], "",
             {"pred": (1, 3, 4, 4), "label": (1, 3, 4, 5)})
