"""Thin Caffe Python layers over layers.scale_loss and layers.metrics.

Use from a prototxt with python_param { module: "layers.caffe_layers" layer: "<class>" }.

- ScaleRefinementLoss: bottoms = K predictions (coarse -> fine) then K targets (same order),
  top = the scalar loss of eq. (5). param_str (JSON, or a Python literal):
  '{"weights": [w_1, ..., w_K]}' (optional, default all 1 = eq. (5)); optional "name" (used in
  error messages, since Caffe does not tell a Python layer its own name); optional "penalty"
  ("l2" = eq. (5), default; "l1"; "charbonnier": layers.scale_loss). Caffe gives Python
  layers no default loss weight: the prototxt must set `loss_weight: 1` on this layer.
- ImageQualityMetrics: bottoms = prediction, target (N x C x H x W in [0,1], BGR by default);
  tops = psnr, ssim (batch means on uint8-quantised images, layers.metrics). No gradient:
  give it `propagate_down: false` twice, no loss_weight (and usually `include { phase: TEST }`);
  a non-zero top diff in backward raises, a zero one (force_backward) yields zero gradients.

param_str is parsed with json.loads or ast.literal_eval, never eval; problems raise
LayerParamError at net construction naming the layer.
"""
import ast
import json

import numpy as np

import caffe

from layers import metrics
from layers.errors import LayerParamError, LayersError
from layers.scale_loss import check_penalty, scale_loss_and_grads, validate_weights


def parse_param_str(param_str, layer_desc):
    """param_str -> dict. Empty means {}. JSON first, then a Python literal; never eval."""
    text = (param_str or "").strip()
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
            raise LayerParamError(
                f"{layer_desc}: cannot parse param_str {param_str!r} as JSON or a Python literal "
                f"({type(exc).__name__}); write it like '{{\"weights\": [1, 1]}}'") from None
    if not isinstance(value, dict):
        raise LayerParamError(
            f"{layer_desc}: param_str must be a JSON object like '{{\"weights\": [1, 1]}}', "
            f"got {param_str!r}")
    return value


class _ParamLayer(caffe.Layer):
    """Shared param_str handling: known keys only, and a description for error messages."""

    KEYS = ("name",)

    def _describe(self, params=None):
        name = (params or {}).get("name") if isinstance(params, dict) else None
        label = f" {name!r}" if name else ""
        return (f"Python layer {type(self).__name__}{label} "
                f"(python_param param_str {getattr(self, 'param_str', '')!r})")

    def _params(self):
        desc = self._describe()
        params = parse_param_str(getattr(self, "param_str", ""), desc)
        unknown = sorted(set(params) - set(self.KEYS))
        if unknown:
            raise LayerParamError(f"{self._describe(params)}: unknown param_str key(s) {unknown}; "
                                  f"allowed: {list(self.KEYS)}")
        self.desc = self._describe(params)
        return params


class ScaleRefinementLoss(_ParamLayer):
    """Eq. (5) over K scales with per-scale weights settable while training (`layer.weights`)."""

    KEYS = ("name", "weights", "penalty")

    def setup(self, bottom, top):
        params = self._params()
        try:
            self.penalty = check_penalty(params.get("penalty", "l2"), where=self.desc)
        except LayersError as exc:
            raise LayerParamError(str(exc)) from None
        if len(bottom) < 2 or len(bottom) % 2:
            raise LayerParamError(
                f"{self.desc}: needs 2K bottoms (K predictions coarse->fine, then K targets), "
                f"got {len(bottom)}")
        if len(top) != 1:
            raise LayerParamError(f"{self.desc}: has exactly one top (the loss), got {len(top)}")
        self.num_scales = len(bottom) // 2
        self.weights = params.get("weights", [1.0] * self.num_scales)
        self._grads = None

    @property
    def weights(self):
        # Read-only view: an in-place edit would bypass validation, so it fails loudly instead.
        view = self._weights.view()
        view.flags.writeable = False
        return view

    @weights.setter
    def weights(self, value):
        try:
            self._weights = validate_weights(value, self.num_scales, where=self.desc)
        except LayersError as exc:
            raise LayerParamError(str(exc)) from None

    def reshape(self, bottom, top):
        k = self.num_scales
        for i in range(k):
            if bottom[i].data.shape != bottom[k + i].data.shape:
                raise LayerParamError(
                    f"{self.desc}: scale {i + 1}: prediction shape {bottom[i].data.shape} "
                    f"differs from target shape {bottom[k + i].data.shape} "
                    f"(bottom order: K predictions, then K targets, coarse -> fine)")
        top[0].reshape(1)

    def forward(self, bottom, top):
        k = self.num_scales
        loss, self._grads = scale_loss_and_grads(
            [bottom[i].data for i in range(k)], [bottom[k + i].data for i in range(k)],
            self._weights, penalty=self.penalty)
        top[0].data[...] = loss

    def backward(self, top, propagate_down, bottom):
        k = self.num_scales
        scale = float(top[0].diff.flat[0])  # the layer's loss_weight
        for i in range(k):
            if propagate_down[i]:
                bottom[i].diff[...] = scale * self._grads[i]
            if propagate_down[k + i]:
                bottom[k + i].diff[...] = -scale * self._grads[i]


class ImageQualityMetrics(_ParamLayer):
    """Batch-mean PSNR and SSIM (layers.metrics) so `caffe train` prints them at test time.

    param_str keys (all optional): "variant" (SSIM, default "matlab3d"), "input_order"
    ("BGR" default, or "RGB"), "psnr_cap_db" (default 100: per-image PSNR of identical images
    is inf and is reported as the cap), "name".
    """

    KEYS = ("name", "variant", "input_order", "psnr_cap_db")

    def setup(self, bottom, top):
        params = self._params()
        if len(bottom) != 2 or len(top) != 2:
            raise LayerParamError(f"{self.desc}: needs bottoms (prediction, target) and tops "
                                  f"(psnr, ssim), got {len(bottom)} bottoms, {len(top)} tops")
        self.variant = params.get("variant", metrics.DEFAULT_SSIM_VARIANT)
        if self.variant not in metrics.SSIM_VARIANTS:
            raise LayerParamError(f"{self.desc}: unknown variant {self.variant!r}; "
                                  f"choose one of {list(metrics.SSIM_VARIANTS)}")
        order = str(params.get("input_order", "BGR")).upper()
        if order not in ("BGR", "RGB"):
            raise LayerParamError(f"{self.desc}: input_order must be 'BGR' or 'RGB', got {order!r}")
        self.bgr = order == "BGR"
        cap = params.get("psnr_cap_db", metrics.PSNR_CAP_DB)
        if isinstance(cap, bool) or not isinstance(cap, (int, float)) or not np.isfinite(cap) \
                or cap <= 0:
            raise LayerParamError(f"{self.desc}: psnr_cap_db must be a positive number, got {cap!r}")
        self.psnr_cap_db = float(cap)

    def reshape(self, bottom, top):
        a, b = bottom[0].data.shape, bottom[1].data.shape
        if a != b or len(a) != 4:
            raise LayerParamError(f"{self.desc}: bottoms must both be N x C x H x W and equal, "
                                  f"got {a} and {b}")
        top[0].reshape(1)
        top[1].reshape(1)

    def forward(self, bottom, top):
        p, s = metrics.batch_metrics(bottom[0].data, bottom[1].data, variant=self.variant,
                                     bgr=self.bgr, psnr_cap_db=self.psnr_cap_db)
        top[0].data[...] = p
        top[1].data[...] = s

    def backward(self, top, propagate_down, bottom):
        # Caffe only calls this under force_backward (which overrides propagate_down: false) or
        # when a top feeds a loss. The first sends zero top diffs: the zero gradient is exact.
        # A real gradient request cannot be honoured: PSNR/SSIM of quantised images are flat.
        if any(np.any(top[i].diff) for i in range(2)):
            raise LayerParamError(
                f"{self.desc}: metrics have no gradient; set `propagate_down: false` for both "
                f"bottoms and do not give this layer (or anything fed by it) a loss_weight")
        for i in range(2):
            if propagate_down[i]:
                bottom[i].diff[...] = 0


def loss_layers(net):
    """[(layer name, ScaleRefinementLoss object)] of a pycaffe net (pycaffe hands back the
    Python object for Python layers)."""
    return [(name, layer) for name, layer in zip(net._layer_names, net.layers)
            if isinstance(layer, ScaleRefinementLoss)]


def scale_loss_blobs(net):
    """(layer name, layer, top, [(prediction, label) per scale]) of the net's one
    ScaleRefinementLoss; LayerParamError when it has none or several."""
    found = loss_layers(net)
    if len(found) != 1:
        raise LayerParamError(f"expected one ScaleRefinementLoss layer, found {len(found)}")
    name, layer = found[0]
    bottoms = list(net.bottom_names[name])
    k = len(bottoms) // 2
    return name, layer, net.top_names[name][0], list(zip(bottoms[:k], bottoms[k:]))


def scale_terms(net, pairs):
    """Unweighted per-scale terms 1/(2N) sum_n ||pred-label||^2/(c h w) = MSE/2 of the last
    forward, as {"loss_r1": ...} (the loss of eq. (5) is their mean weighted by the group's w_k);
    `pairs` as scale_loss_blobs gives them."""
    out = {}
    for k, (p, t) in enumerate(pairs, start=1):
        d = net.blobs[p].data.astype(np.float64) - net.blobs[t].data
        out[f"loss_r{k}"] = 0.5 * float(np.mean(d * d))
    return out


def set_loss_weights(net, weights):
    """Set the per-scale weights of every ScaleRefinementLoss in `net`; returns their names.

    All layers are validated before any is changed, so a bad list leaves the net untouched.
    """
    found = loss_layers(net)
    if not found:
        raise LayerParamError("set_loss_weights: the net has no ScaleRefinementLoss layer "
                              "(is it the stock-EuclideanLoss flavour?)")
    for _, layer in found:
        try:
            validate_weights(weights, layer.num_scales, where=layer.desc)
        except LayersError as exc:
            raise LayerParamError(f"set_loss_weights: {exc}") from None
    for _, layer in found:
        layer.weights = weights
    return [name for name, _ in found]
