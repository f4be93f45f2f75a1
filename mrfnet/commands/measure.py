"""`mrfnet measure`: seconds per training iteration and peak memory (RSS) of one training setting,
on the real train net and a small synthetic LMDB; prints one JSON line (solver.measure). Run it
in a fresh process for a peak RSS that belongs to this setting alone."""
import json
import sys

from solver.measure import measure

EXAMPLE = """
mrfnet measure --batch 8 --crop 64 --iters 10
mrfnet measure --batch 8 --crop 64 --iters 10 --workers 2
"""


def add_arguments(p):
    p.add_argument("--variant", default="mrfnet")
    p.add_argument("--paths", type=int, default=4)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--workers", type=int, default=1,
                   help="processes sharing each batch (mrfnet train --workers); peak RSS is "
                        "their sum")


def run(a):
    if a.iters < 1 or a.warmup < 0 or a.batch < 1:
        print("error: --iters >= 1, --warmup >= 0 and --batch >= 1 are required", file=sys.stderr)
        return 2
    print(json.dumps(measure(a.variant, a.batch, a.crop, a.iters, a.paths, a.warmup,
                              a.workers)))
    return 0
