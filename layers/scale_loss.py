"""The scale refinement loss, eq. (5) of the MRFNet paper, as plain numpy (value and gradient).

    L = 1/(2K) * sum_k  w_k / (c_k h_k w_k) * (1/N) * sum_n ||pred_k[n] - target_k[n]||^2

K scales (coarse -> fine), per-scale weights w_k >= 0 (the paper's eq. (5) is w_k = 1; the loss
weight groups change them during training), each scale normalised by its own C*H*W and the sum
averaged over the N images of the batch. This equals a stock Caffe EuclideanLoss per scale
(which computes 1/(2N) ||.||^2) with loss_weight w_k / (K c_k h_k w_k).

Penalties beside the paper's L2 (an option of `mrfnet train --loss`, not the paper): the same
per-scale normalisation with the squared error replaced by
    "l1":          |d|                      (gradient sign(d))
    "charbonnier": sqrt(d^2 + eps^2)        (gradient d / sqrt(d^2 + eps^2)), eps = 1e-3
i.e. L = 1/K sum_k w_k/(c_k h_k w_k) (1/N) sum rho(pred_k - target_k). Both have a stock Caffe
twin (prototxt_gen.nets: Eltwise difference, then AbsVal or Power layers, then Reduction).

Kept free of Caffe so the numbers can be tested and reused without a net.
"""
import json

import numpy as np

from layers.errors import LossWeightError

PENALTIES = ("l2", "l1", "charbonnier")
CHARBONNIER_EPS = 1e-3


def loss_param_str(weights, name=None, penalty="l2"):
    """The param_str of a ScaleRefinementLoss layer (layers.caffe_layers), keys in the order of
    the committed train_pylayer.prototxt files: name, weights, penalty (left out for "l2")."""
    d = {"name": str(name)} if name else {}
    d["weights"] = [float(w) for w in weights]
    if penalty != "l2":
        d["penalty"] = penalty
    return json.dumps(d)


def check_penalty(penalty, where="scale refinement loss"):
    """The penalty name, or LossWeightError naming the choices."""
    if penalty not in PENALTIES:
        raise LossWeightError(f"{where}: unknown penalty {penalty!r}; choose one of {list(PENALTIES)}")
    return penalty


def penalty_and_grad(d, penalty, eps=CHARBONNIER_EPS):
    """(elementwise penalty rho(d), d rho / d d) of the difference d (float64 arrays)."""
    if penalty == "l2":
        return 0.5 * d * d, d
    if penalty == "l1":
        return np.abs(d), np.sign(d)
    root = np.sqrt(d * d + eps * eps)
    return root, d / root


def validate_weights(weights, num_scales, where="scale refinement loss"):
    """Return `weights` as a float64 array after checking count, sign and finiteness.

    `where` names the caller (a layer, a config file) so the message says what to fix.
    """
    try:
        w = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError):
        raise LossWeightError(f"{where}: weights must be a list of numbers, got {weights!r}") from None
    if w.ndim != 1:
        raise LossWeightError(f"{where}: weights must be a flat list, got {weights!r}")
    if num_scales < 1:
        raise LossWeightError(f"{where}: need at least one scale, got {num_scales}")
    if w.size != num_scales:
        raise LossWeightError(
            f"{where}: got {w.size} weights {list(w)} for {num_scales} scales; "
            f"give exactly one weight per scale (coarse -> fine)")
    if not np.all(np.isfinite(w)):
        raise LossWeightError(f"{where}: weights must be finite, got {list(w)}")
    if np.any(w < 0):
        raise LossWeightError(f"{where}: weights must be >= 0, got {list(w)}")
    if not np.any(w > 0):
        raise LossWeightError(f"{where}: at least one weight must be > 0, got {list(w)}")
    return w


def _check_pairs(preds, targets):
    if len(preds) != len(targets) or not preds:
        raise LossWeightError(
            f"scale refinement loss: need K >= 1 predictions and K targets, "
            f"got {len(preds)} predictions and {len(targets)} targets")
    for k, (p, t) in enumerate(zip(preds, targets), start=1):
        if np.shape(p) != np.shape(t):
            raise LossWeightError(
                f"scale refinement loss: scale {k}: prediction shape {np.shape(p)} "
                f"differs from target shape {np.shape(t)}")
        if np.ndim(p) < 2 or np.shape(p)[0] == 0 or np.size(p) == 0:
            raise LossWeightError(
                f"scale refinement loss: scale {k}: expected N x C x H x W, got {np.shape(p)}")


def scale_factors(shapes, weights):
    """Per-scale factor f_k = w_k / (K * c_k h_k w_k * N_k), so that
    L = sum_k f_k / 2 * ||pred_k - target_k||^2 and dL/dpred_k = f_k * (pred_k - target_k)."""
    k_total = len(shapes)
    w = validate_weights(weights, k_total)
    out = []
    for wk, shape in zip(w, shapes):
        n = shape[0]
        chw = int(np.prod(shape[1:]))
        out.append(wk / (k_total * chw * n))
    return out


def scale_loss(preds, targets, weights, penalty="l2"):
    """Loss value (float) of eq. (5) for lists of K predictions and K targets (coarse -> fine)."""
    value, _ = scale_loss_and_grads(preds, targets, weights, penalty=penalty)
    return value


def scale_loss_and_grads(preds, targets, weights, top_grad=1.0, penalty="l2"):
    """(loss, [dL/dpred_k]) with each gradient scaled by `top_grad` (Caffe's top diff).

    The gradient with respect to target_k is the negation of that of pred_k.
    Computed in float64; callers cast to their blob dtype. penalty "l2" is eq. (5).
    """
    _check_pairs(preds, targets)
    check_penalty(penalty)
    factors = scale_factors([np.shape(p) for p in preds], weights)
    loss = 0.0
    grads = []
    for f, p, t in zip(factors, preds, targets):
        d = np.asarray(p, dtype=np.float64) - np.asarray(t, dtype=np.float64)
        rho, drho = penalty_and_grad(d, penalty)
        loss += f * float(rho.sum())
        grads.append((top_grad * f) * drho)
    return loss, grads


def euclidean_loss_weights(shapes, weights):
    """loss_weight of a stock EuclideanLoss per scale giving the same objective: w_k/(K c h w)."""
    k_total = len(shapes)
    w = validate_weights(weights, k_total)
    return [float(wk / (k_total * int(np.prod(s[1:])))) for wk, s in zip(w, shapes)]
