"""Table I in the built nets: paper names, built kernel/stride/pad/outputs, documented deviations."""
from pathlib import Path

import pytest

import caffe  # noqa:F401  (real Caffe: a missing Caffe fails here)

from prototxt_gen import nets, topology as T
from prototxt_gen.caffe_net import load

DOCS = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def layers_by_name(net_param):
    return {layer.name: layer for layer in net_param.layer}


def conv_fields(layer):
    cp = layer.convolution_param
    k = (cp.kernel_h, cp.kernel_w) if cp.kernel_h else (cp.kernel_size[0],) * 2
    return {"kernel": k, "stride": cp.stride[0] if cp.stride else 1,
            "pad": cp.pad[0] if cp.pad else 0, "outputs": cp.num_output}


def test_every_table_i_row_is_built_under_its_paper_name():
    layers = layers_by_name(nets.deploy_net("mrfnet", 4))
    live = load(nets.deploy_net("mrfnet", 4, 64, 64))
    for row in T.TABLE_I_BUILT:
        assert row.name in layers, f"{row.name} missing from the MRFNet deploy net"
        layer = layers[row.name]
        assert layer.type == ("Deconvolution" if row.deconv else "Convolution"), row.name
        assert conv_fields(layer) == {"kernel": row.kernel, "stride": row.stride,
                                      "pad": row.pad, "outputs": row.outputs}, row.name
        shape = live.params[row.name][0].shape   # Caffe's own view of the weights
        out_ch = shape[1] if row.deconv else shape[0]
        assert (out_ch, shape[2], shape[3]) == (row.outputs, *row.kernel), row.name


def test_rules_reproduce_table_i_as_built():
    rows = T.conv_rows("mrfnet", 4)
    for row in T.TABLE_I_BUILT:
        assert rows[row.name] == row


def test_every_printed_vs_built_difference_is_documented():
    built = {r.name: r for r in T.TABLE_I_BUILT}
    printed = {r.name: r for r in T.TABLE_I_PRINTED}
    found = set()
    for name, b in built.items():
        p = printed.get(name)
        if p is None:
            found.add((name, "missing"))
            continue
        assert p.outputs == b.outputs, f"{name}: output channels must never deviate"
        for field in ("kernel", "stride", "pad"):
            if getattr(p, field) != getattr(b, field):
                found.add((name, field))
    documented = {(name, field) for names, field, _ in T.DEVIATIONS for name in names}
    assert found == documented
    assert set(printed) <= set(built), "every printed row is built"


def test_architecture_doc_names_every_deviation():
    text = DOCS.read_text()
    for names, _, _ in T.DEVIATIONS:
        for name in names:
            assert name in text, f"docs/architecture.md does not mention {name}"


@pytest.mark.parametrize("variant", T.VARIANTS)
def test_variant_kernels(variant):
    v = T.VARIANT_SPECS[variant]
    layers = layers_by_name(nets.deploy_net(variant, 4, 64, 64))
    small = 1 if v.lightweight else 3
    for name in ["Conv2", "Conv4", "Conv6", "Conv8"] + [f"conv_r{k}_1" for k in range(1, 5)] \
            + [f"crp_r{k}_conv{i}" for k in range(1, 5) for i in (1, 2)] \
            + [f"conv_r{k}_m{i}" for k in range(1, 5) for i in (2, 4)]:
        assert conv_fields(layers[name])["kernel"] == (small, small), (variant, name)
        assert conv_fields(layers[name])["pad"] == small // 2, (variant, name)
    for k in range(1, 5):
        for i in (1, 3):
            assert conv_fields(layers[f"conv_r{k}_m{i}"])["kernel"] == (3, 3)


@pytest.mark.parametrize("variant", T.VARIANTS)
def test_residual_wiring_eqs_1_to_3(variant):
    """Eq. (1) concat, eq. (2) residual fusion, eq. (3) MRF unit and the remote residual."""
    layers = layers_by_name(nets.deploy_net(variant, 4, 64, 64))
    residual = T.VARIANT_SPECS[variant].residual
    for k in range(1, 5):
        if k > 1:
            s = 4 - k
            assert list(layers[f"concat_r{k}"].bottom) == [f"Conv{2 * s + 2}", f"deconv{k - 1}"]
            assert list(layers[f"conv_r{k}_1"].bottom) == [f"concat_r{k}"]
        assert (f"fuse_r{k}" in layers) == (residual and k > 1)
        assert (f"l_r{k}" in layers) == residual
        if residual:
            assert list(layers[f"mrf_r{k}"].bottom) == [f"conv_r{k}_m2", f"conv_r{k}_m4"]
            assert list(layers[f"l_r{k}"].bottom) == [f"mrf_r{k}", f"crp_r{k}_sum2"]
            if k > 1:
                assert list(layers[f"fuse_r{k}"].bottom) == [f"conv_r{k}_1", f"deconv{k - 1}"]
            after_unit = f"l_r{k}"
        else:
            assert list(layers[f"conv_r{k}_m1"].bottom) == [f"crp_r{k}_sum2"]
            after_unit = f"conv_r{k}_m4"
        consumer = f"deconv{k}" if k < 4 else "conv_r4_pred"
        assert list(layers[consumer].bottom) == [after_unit]


@pytest.mark.parametrize("bad,message", [
    (dict(variant="resnet"), "unknown variant 'resnet'"),
    (dict(paths=0), "integer in 1..6"),
    (dict(paths=7), "integer in 1..6"),
    (dict(paths=2.0), "integer in 1..6"),
])
def test_bad_variant_or_paths_is_a_clear_error(bad, message):
    args = {"variant": "mrfnet", "paths": 4, **bad}
    for build in (lambda: nets.deploy_net(args["variant"], args["paths"]),
                  lambda: nets.train_net(args["variant"], args["paths"])):
        with pytest.raises(T.TopologyError, match=message):
            build()


def test_crop_and_deploy_size_must_be_multiples_of_the_stride():
    with pytest.raises(T.TopologyError, match="crop size.*total stride 8"):
        nets.train_net("mrfnet", 4, crop=100)
    with pytest.raises(T.TopologyError, match="crop size.*total stride 32"):
        nets.train_net("mrfnet", 6, crop=48)
    with pytest.raises(T.TopologyError, match=r"height 333, width 517.*total stride 8.*pad"):
        nets.deploy_net("mrfnet", 4, height=333, width=517)
    assert T.padded_size(333, 517, 4) == (336, 520)
    nets.deploy_net("mrfnet", 4, height=336, width=520)  # the padded size builds


def test_bad_loss_settings_are_clear_errors():
    with pytest.raises(T.TopologyError, match="one weight per path"):
        nets.train_net("mrfnet", 4, weights=[1, 1])
    with pytest.raises(T.TopologyError, match="not all 0"):
        nets.train_net("mrfnet", 2, weights=[0, 0])
    with pytest.raises(T.TopologyError, match="unknown loss kind"):
        nets.train_net("mrfnet", 2, loss="l1")
    with pytest.raises(T.TopologyError, match="unknown data kind"):
        nets.train_net("mrfnet", 2, data="leveldb")
    with pytest.raises(T.TopologyError, match="batch size"):
        nets.train_net("mrfnet", 2, batch_size=0)
