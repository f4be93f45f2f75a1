"""Whole nets: train (LMDB / HDF5 / Input, stock or Python loss), test and deploy.

The scale refinement loss, eq. (5), L = 1/(2K) sum_k w_k/(c_k h_k w_k) ||pred_k - label_k||^2
(batch mean), comes in two flavours with the same value and gradients:
  - "stock": one EuclideanLoss per path (it already divides by 2N), loss_weight = w_k/(K c_k h_k w_k),
    so `caffe train -gpu ...` (which refuses Python layers) can train it;
  - "python": one Python layer (layers.caffe_layers.ScaleRefinementLoss, referenced by name only)
    whose weights can be changed while training.
Targets label_r{k} are the sharp image average-pooled to the path's scale inside the net.

`penalty` "l1" or "charbonnier" (an option of `mrfnet train --loss`, not the paper; see
layers.scale_loss) replaces the squared error: the Python layer gets it in its param_str, and the
stock flavour becomes, per scale, Eltwise (pred - label) -> AbsVal (l1) or Power(2) then
Power(0.5, shift eps^2) (charbonnier) -> Reduction SUM with coeff w_k/(K c_k h_k w_k N), which
Caffe's CLI and multi-GPU training run like any stock layer.
"""
from caffe import layers as L, params as P
from caffe.net_spec import NetSpec

from layers.scale_loss import CHARBONNIER_EPS, PENALTIES, loss_param_str
from mrfnet.netfile import message_text, parse_message

from . import topology as T
from .units import downsample, refinement

DEFAULT_CROP = 256
DEFAULT_BATCH = 16
DEFAULT_TEST_BATCH = 4
DEFAULT_DEPLOY_SIZE = (256, 256)
PIXEL_SCALE = 1.0 / 255.0
# Relative placeholders: what `mrfnet convert --out data` writes; the training tools rewrite them.
SOURCES = {
    ("lmdb", "train"): "data/train_lmdb",
    ("lmdb", "test"): "data/test_lmdb",
    ("hdf5", "train"): "data/train_hdf5.txt",
    ("hdf5", "test"): "data/test_hdf5.txt",
}
DATA_KINDS = ("lmdb", "hdf5", "input")
LOSS_KINDS = ("stock", "python")
LOSS_MODULE, LOSS_LAYER = "layers.caffe_layers", "ScaleRefinementLoss"
CHANNELS = 3


def loss_weights(paths, weights=None):
    """The per-scale weights w_1..w_K (coarse to fine); default all 1.0. Validated."""
    T.check_paths(paths)
    if weights is None:
        return [1.0] * paths
    weights = [float(w) for w in weights]
    if len(weights) != paths:
        raise T.TopologyError(f"loss weights: need one weight per path ({paths}), got {len(weights)}")
    if any(not w >= 0 for w in weights) or not any(weights):
        raise T.TopologyError(f"loss weights must be >= 0 and not all 0, got {weights}")
    return weights


def stock_loss_weights(paths, crop, weights=None):
    """loss_weight of each EuclideanLoss so that their sum equals eq. (5) exactly."""
    out = []
    for k, w in enumerate(loss_weights(paths, weights), start=1):
        side = crop // 2 ** T.path_scale(k, paths)
        out.append(w / (paths * CHANNELS * side * side))
    return out


def deploy_net(variant=T.DEFAULT_VARIANT, paths=T.DEFAULT_PATHS, height=None, width=None):
    """Input "data" 1x3xHxW in [0,1] BGR -> predict_deblur (finest path) and predict_deblur_255."""
    height, width = (height or DEFAULT_DEPLOY_SIZE[0]), (width or DEFAULT_DEPLOY_SIZE[1])
    T.check_variant(variant)
    T.check_size(height, width, paths, what="deploy input size")
    n = NetSpec()
    n.data = L.Input(shape={"dim": [1, CHANNELS, height, width]})
    pred = refinement(n, n.data, variant, paths, pred_names={paths: f"pred_r{paths}"})[paths]
    # An explicit Split (shares data, no copy) so that both predict_deblur and
    # predict_deblur_255 stay unconsumed, i.e. both are outputs of the net.
    n.predict_deblur, n.pred_for_255 = L.Split(pred, ntop=2)
    n.predict_deblur_255 = L.Power(n.pred_for_255, power=1.0, scale=255.0, shift=0.0)
    return _named(n, f"{variant}_p{paths}_deploy")


def train_net(variant=T.DEFAULT_VARIANT, paths=T.DEFAULT_PATHS, *, data="lmdb", loss="stock",
              crop=DEFAULT_CROP, batch_size=None, source=None, weights=None, phase="train",
              penalty="l2"):
    """A training (phase "train") or validation (phase "test") net with the eq. (5) loss
    (penalty "l2"; "l1" / "charbonnier" replace the squared error, see the module's doc)."""
    T.check_variant(variant)
    T.check_paths(paths)
    if data not in DATA_KINDS:
        raise T.TopologyError(f"unknown data kind {data!r}: choose one of {', '.join(DATA_KINDS)}")
    if loss not in LOSS_KINDS:
        raise T.TopologyError(f"unknown loss kind {loss!r}: choose one of {', '.join(LOSS_KINDS)}")
    if penalty not in PENALTIES:
        raise T.TopologyError(f"unknown penalty {penalty!r}: choose one of {', '.join(PENALTIES)}")
    if phase not in ("train", "test"):
        raise T.TopologyError(f"phase must be 'train' or 'test', got {phase!r}")
    T.check_size(crop, crop, paths, what="crop size")
    if batch_size is None:
        batch_size = DEFAULT_BATCH if phase == "train" else DEFAULT_TEST_BATCH
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise T.TopologyError(f"batch size must be a positive integer, got {batch_size!r}")
    w = loss_weights(paths, weights)
    n = NetSpec()
    _data_layers(n, data, phase, crop, batch_size, source or SOURCES.get((data, phase)))
    preds = refinement(n, n.data, variant, paths)
    labels = {k: downsample(n, f"label_r{k}", n.label, 2 ** T.path_scale(k, paths))
              for k in range(1, paths + 1)}
    ks = range(1, paths + 1)
    if loss == "stock" and penalty == "l2":
        for k, lw in zip(ks, stock_loss_weights(paths, crop, w)):
            n[f"loss_r{k}"] = L.EuclideanLoss(preds[k], labels[k], loss_weight=lw)
    elif loss == "stock":
        # w_k/(K c h w) as for EuclideanLoss, and 1/N: Reduction does not average the batch
        for k, lw in zip(ks, stock_loss_weights(paths, crop, w)):
            _stock_penalty(n, k, preds[k], labels[k], penalty, lw / batch_size)
    else:
        n.loss = L.Python(*[preds[k] for k in ks], *[labels[k] for k in ks], loss_weight=1.0,
                          python_param={"module": LOSS_MODULE, "layer": LOSS_LAYER,
                                        "param_str": loss_param_str(w, "loss", penalty)})
    return _named(n, f"{variant}_p{paths}_{phase}_{data}_{loss}",
                  rename={"data": "slice_pair"} if data == "lmdb" else None)


def _stock_penalty(n, k, pred, label, penalty, coeff):
    """loss_r{k} = coeff * sum rho(pred - label) from stock layers (module doc)."""
    n[f"diff_r{k}"] = L.Eltwise(pred, label, operation=P.Eltwise.SUM, coeff=[1.0, -1.0])
    if penalty == "l1":
        n[f"rho_r{k}"] = L.AbsVal(n[f"diff_r{k}"])
    else:
        n[f"sq_r{k}"] = L.Power(n[f"diff_r{k}"], power=2.0)
        n[f"rho_r{k}"] = L.Power(n[f"sq_r{k}"], power=0.5, shift=CHARBONNIER_EPS ** 2)
    n[f"loss_r{k}"] = L.Reduction(n[f"rho_r{k}"], operation=P.Reduction.SUM, coeff=coeff,
                                  loss_weight=1.0)


def _data_layers(n, data, phase, crop, batch_size, source):
    """Tops "data" (blurred) and "label" (sharp), N x 3 x crop x crop in [0,1], BGR."""
    if data == "lmdb":
        # one 6-channel Datum per patch (blur BGR + sharp BGR): crop and mirror treat both alike
        n.pair = L.Data(source=source, backend=P.Data.LMDB, batch_size=batch_size,
                        transform_param={"scale": PIXEL_SCALE, "crop_size": crop,
                                         "mirror": phase == "train"})
        n.data, n.label = L.Slice(n.pair, slice_param={"axis": 1, "slice_point": [CHANNELS]},
                                  ntop=2)
    elif data == "hdf5":
        # float32 datasets "data" and "label", N x 3 x crop x crop (no crop/mirror in HDF5Data)
        n.data, n.label = L.HDF5Data(source=source, batch_size=batch_size,
                                     shuffle=phase == "train", ntop=2)
    else:
        shape = {"dim": [batch_size, CHANNELS, crop, crop]}
        n.data, n.label = L.Input(shape=[shape, shape], ntop=2)


def _named(n, name, rename=None):
    net = n.to_proto()
    net.name = name
    for layer in net.layer:
        layer.name = (rename or {}).get(layer.name, layer.name)
    return net


def to_text(net, header=()):
    """Prototxt text of a NetParameter with '#' header lines (deterministic)."""
    return message_text(net, header)


def parse(text):
    """Parse prototxt text back into a NetParameter (for tests and tools)."""
    return parse_message(text)
