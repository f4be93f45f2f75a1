"""`mrfnet init-weights`: a freshly initialised net saved as a .caffemodel, for `mrfnet train
--weights` (solver.init_weights: Caffe's fillers, zero heads, or the residual-aware He init)."""
import sys

from prototxt_gen.topology import TopologyError
from solver.init_weights import INITS, init_weights

EXAMPLE = """
mrfnet init-weights --variant mrfnet --paths 4 --init residual-msra --seed 0 --out init.caffemodel
mrfnet train --weights init.caffemodel --train-db data/train_lmdb --out runs/he
"""


def add_arguments(p):
    p.add_argument("--variant", default="mrfnet")
    p.add_argument("--paths", type=int, default=4)
    p.add_argument("--zero-heads", action="store_true", help="prediction heads start at 0 (identity)")
    p.add_argument("--init", choices=INITS, default="filler",
                   help="filler: the prototxt's fillers (xavier); residual-msra: He init with "
                        "tamed residual branches and zero heads (solver/init_weights.py)")
    p.add_argument("--seed", type=int, default=0, help="seed of the draws (default 0)")
    p.add_argument("--out", required=True)


def run(args):
    try:
        zeroed = init_weights(args.out, args.variant, args.paths, args.zero_heads, args.seed,
                              args.init)
    except TopologyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}" + (f" (zeroed: {', '.join(zeroed)})" if zeroed else ""))
    return 0
