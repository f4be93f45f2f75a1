"""A freshly initialised net saved as a .caffemodel: Caffe's fillers or a residual-aware He init.

`mrfnet train --weights` then starts from it. Zero heads (`conv_r{k}_pred` weights and biases
0) make the untrained net exactly the identity (each path's prediction is its input pooled to
that scale), where the generator's N(0, 1e-3) heads start about 1 dB below the blurred input
on the aerial tiles (docs/training.md, short runs). With `--init filler` everything else is Caffe's
own filler draw (xavier) for the given seed.

`--init residual-msra` (docs/training.md, "initialisation"): Caffe's xavier (variance 1/fan_in)
halves the signal's variance at every ReLU, so over MRFNet's depth the coarse paths start near
zero and, trained, go 85-98% dead (measured); plain He/msra (2/fan_in) keeps each conv's scale
but the unnormalised residual sums then multiply it path after path (about 350 at r4). This
scheme is He init for every convolution and deconvolution (std sqrt(2 / fan_in), fan_in =
count / shape[0] as Caffe's fillers), with every residual branch tamed: the CRP convolutions
start at 0 (no ReLU follows them, so each chained sum starts as the identity and still learns),
the convolutions whose outputs enter a sum (MRF unit m2 and m4, eq. (3); the fusion conv of
paths 2.., eq. (2)) are scaled by 1/sqrt(2), and the prediction heads start at 0. Activations
then stay between about 0.15 and 1.1 (mean |x|) at every depth.

  mrfnet init-weights --variant mrfnet --paths 4 --init residual-msra --seed 0 --out init.caffemodel
"""
import os
import sys
import tempfile


INITS = ("filler", "residual-msra")


def _residual_msra(net, seed):
    """He init with tamed residual branches (module docstring); returns the zeroed layers."""
    import numpy as np
    rng = np.random.default_rng(seed)
    zeroed = []
    for name, blobs in net.params.items():
        w = blobs[0].data
        std = (2.0 * w.shape[0] / w.size) ** 0.5
        if name.endswith("_pred") or name.startswith("crp_"):
            std = 0.0
            zeroed.append(name)
        elif name.endswith(("_m2", "_m4")) or (name.startswith("conv_r") and name.endswith("_1")
                                               and name != "conv_r1_1"):
            std *= 0.5 ** 0.5
        w[...] = rng.standard_normal(w.shape) * std if std else 0.0
        for b in blobs[1:]:
            b.data[...] = 0
    return zeroed


def init_weights(out, variant="mrfnet", paths=4, zero_heads=True, seed=0, init="filler"):
    if init not in INITS:
        raise ValueError(f"--init must be one of {', '.join(INITS)}, got {init!r}")
    import caffe
    from prototxt_gen import nets

    net_text = nets.to_text(nets.train_net(variant, paths, data="input", loss="python",
                                           crop=2 ** (paths - 1) * 8, batch_size=1))
    caffe.set_mode_cpu()
    caffe.set_random_seed(seed)
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as f:
        f.write(net_text)
    try:
        net = caffe.Net(f.name, caffe.TRAIN)
    finally:
        os.unlink(f.name)
    zeroed = []
    if init == "residual-msra":
        zeroed = _residual_msra(net, seed)
    elif zero_heads:
        for name, blobs in net.params.items():
            if name.endswith("_pred"):
                for b in blobs:
                    b.data[...] = 0
                zeroed.append(name)
    tmp = str(out) + ".tmp"
    net.save(tmp)
    os.replace(tmp, out)
    return zeroed


if __name__ == "__main__":  # kept for old scripts: use `mrfnet init-weights`
    from mrfnet.cli import main
    sys.exit(main(["init-weights", *sys.argv[1:]]))
