"""ImageQualityMetrics through a real caffe.Net: known PSNR values, SSIM against a reference
written here from the published definition, inf handling, BGR input and no gradient."""
import numpy as np
import pytest
from scipy import signal

import caffe

from layers.errors import LayerParamError


def metric_net(tmp_path, shape, param_str="", force_backward=False):
    dims = " ".join(f"dim: {d}" for d in shape)
    prop = "propagate_down: false propagate_down: false"
    text = "\n".join([
        "force_backward: true" if force_backward else "",
        f'layer {{ name: "pred" type: "Input" top: "pred" input_param {{ shape {{ {dims} }} }} }}',
        f'layer {{ name: "label" type: "Input" top: "label" input_param {{ shape {{ {dims} }} }} }}',
        f'layer {{ name: "metrics" type: "Python" bottom: "pred" bottom: "label" top: "psnr" '
        f'top: "ssim" {prop} python_param {{ module: "layers.caffe_layers" '
        f"layer: \"ImageQualityMetrics\" param_str: '{param_str}' }} }}"])
    path = tmp_path / "metrics.prototxt"
    path.write_text(text)
    return caffe.Net(str(path), caffe.TEST)


def _run(net, pred_u8_bgr, label_u8_bgr):
    """uint8 N x H x W x 3 BGR images -> blobs in [0,1] -> (psnr, ssim) from the layer."""
    net.blobs["pred"].data[...] = pred_u8_bgr.transpose(0, 3, 1, 2) / np.float32(255)
    net.blobs["label"].data[...] = label_u8_bgr.transpose(0, 3, 1, 2) / np.float32(255)
    out = net.forward()
    return float(out["psnr"][0]), float(out["ssim"][0])


def _ref_ssim_3d(a, b, sigma=1.5):
    """Published definition, MATLAB's N-D form: (11 x 11 x 11) Gaussian, replicate borders,
    C1 = (0.01*255)^2, C2 = (0.03*255)^2, mean over the H x W x 3 map. Via FFT convolution."""
    r = int(np.ceil(3 * sigma))
    ax = np.arange(-r, r + 1, dtype=float)
    k = np.exp(-(ax[:, None, None] ** 2 + ax[None, :, None] ** 2 + ax[None, None, :] ** 2)
               / (2 * sigma ** 2))
    k /= k.sum()

    def blur(z):
        return signal.fftconvolve(np.pad(z, r, mode="edge"), k, mode="valid")

    x, y = a.astype(float), b.astype(float)
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    return np.mean((2 * mx * my + c1) * (2 * cxy + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2)))


def test_identical_images(tmp_path):
    net = metric_net(tmp_path, (2, 3, 16, 16))
    img = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3)).astype(np.uint8)
    p, s = _run(net, img, img)
    assert p == 100.0  # per-image inf is reported as the cap
    assert s == pytest.approx(1.0, abs=1e-6)
    net2 = metric_net(tmp_path, (2, 3, 16, 16), '{"psnr_cap_db": 60}')
    assert _run(net2, img, img)[0] == 60.0


@pytest.mark.parametrize("delta,every", [(2, 1), (5, 3), (17, 5)])
def test_fixed_noise_psnr_is_analytic(tmp_path, delta, every):
    rng = np.random.default_rng(delta)
    n, h, w = 3, 12, 10
    label = rng.integers(30, 220, (n, h, w, 3)).astype(np.uint8)
    pred = label.astype(int)
    flat = pred.reshape(n, -1)
    idx = np.arange(0, flat.shape[1], every)
    flat[:, idx] += np.where(rng.random((n, idx.size)) < 0.5, -delta, delta)
    pred = pred.astype(np.uint8)
    mse = idx.size * delta ** 2 / (h * w * 3)  # the same for every image
    p, _ = _run(metric_net(tmp_path, (n, 3, h, w)), pred, label)
    assert abs(p - 10 * np.log10(255 ** 2 / mse)) < 0.01


def test_ssim_matches_reference_and_uses_uint8(tmp_path):
    rng = np.random.default_rng(4)
    n, h, w = 2, 20, 24
    label = rng.integers(0, 256, (n, h, w, 3)).astype(np.uint8)
    pred = np.clip(label + rng.normal(0, 12, label.shape), 0, 255).astype(np.uint8)
    net = metric_net(tmp_path, (n, 3, h, w))
    # sub-quantum float offsets must vanish in the uint8 quantisation
    net.blobs["pred"].data[...] = pred.transpose(0, 3, 1, 2) / np.float32(255) + 0.4 / 255
    net.blobs["label"].data[...] = label.transpose(0, 3, 1, 2) / np.float32(255) - 0.4 / 255
    out = net.forward()
    rgb = [(pred[i, ..., ::-1], label[i, ..., ::-1]) for i in range(n)]
    expected = np.mean([_ref_ssim_3d(a, b) for a, b in rgb])
    assert float(out["ssim"][0]) == pytest.approx(expected, abs=1e-6)
    mses = [np.mean((a.astype(float) - b) ** 2) for a, b in rgb]
    assert float(out["psnr"][0]) == pytest.approx(np.mean(10 * np.log10(255 ** 2 / np.array(mses))),
                                                  abs=1e-4)


def test_skimage_variant_selectable(tmp_path):
    from skimage.metrics import structural_similarity
    rng = np.random.default_rng(5)
    label = rng.integers(0, 256, (1, 16, 16, 3)).astype(np.uint8)
    pred = np.clip(label + rng.normal(0, 20, label.shape), 0, 255).astype(np.uint8)
    _, s = _run(metric_net(tmp_path, (1, 3, 16, 16), '{"variant": "skimage"}'), pred, label)
    golden = structural_similarity(pred[0], label[0], channel_axis=-1, gaussian_weights=True,
                                   sigma=1.5, use_sample_covariance=False, data_range=255)
    assert s == pytest.approx(golden, abs=1e-6)


def test_no_gradient(tmp_path):
    img = np.zeros((1, 8, 8, 3), np.uint8)
    # force_backward overrides propagate_down: false; the tops carry no loss -> zero gradient
    net = metric_net(tmp_path, (1, 3, 8, 8), force_backward=True)
    _run(net, img, img)
    net.blobs["pred"].diff[...] = 5.0
    net.backward()
    assert not np.any(net.blobs["pred"].diff)
    # a real gradient request (a loss on a metric top) is refused with instructions
    net.blobs["psnr"].diff[...] = 1.0
    with pytest.raises(LayerParamError, match="no gradient.*propagate_down: false"):
        net._backward(len(net.layers) - 1, 0)
