"""A freshly initialised net saved as a .caffemodel, optionally with zero prediction heads.

`mrfnet train --weights` then starts from it. Zero heads (`conv_r{k}_pred` weights and biases
0) make the untrained net exactly the identity (each path's prediction is its input pooled to
that scale), where the generator's N(0, 1e-3) heads start about 1 dB below the blurred input
on the aerial tiles (docs/training.md, short runs). Everything else is Caffe's own filler draw
(xavier) for the given seed.

  python -m solver.init_weights --variant mrfnet --paths 4 --zero-heads --seed 0 --out init.caffemodel
"""
import argparse
import os
import sys
import tempfile

os.environ.setdefault("GLOG_minloglevel", "2")


def init_weights(out, variant="mrfnet", paths=4, zero_heads=True, seed=0):
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
    if zero_heads:
        for name, blobs in net.params.items():
            if name.endswith("_pred"):
                for b in blobs:
                    b.data[...] = 0
                zeroed.append(name)
    tmp = str(out) + ".tmp"
    net.save(tmp)
    os.replace(tmp, out)
    return zeroed


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m solver.init_weights", description=__doc__.splitlines()[0])
    p.add_argument("--variant", default="mrfnet")
    p.add_argument("--paths", type=int, default=4)
    p.add_argument("--zero-heads", action="store_true", help="prediction heads start at 0 (identity)")
    p.add_argument("--seed", type=int, default=0, help="Caffe's filler seed (default 0)")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    from prototxt_gen.topology import TopologyError
    try:
        zeroed = init_weights(args.out, args.variant, args.paths, args.zero_heads, args.seed)
    except TopologyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}" + (f" (zeroed: {', '.join(zeroed)})" if zeroed else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
