"""`mrfnet summary`: parameters, multiply-adds and blob memory of each variant's deploy net,
counted from the real caffe.Net (prototxt_gen.summary says how)."""
import sys

from prototxt_gen import topology as T
from prototxt_gen.summary import DEFAULT_SIZES, _size, markdown, variant_stats

EXAMPLE = """
mrfnet summary                                   # all four variants at 256x256 and 1280x720
mrfnet summary --variant mrfnet --paths 3 --size 640x480
"""


def add_arguments(parser):
    parser.add_argument("--variant", action="append", choices=T.VARIANTS, metavar="NAME",
                        help="variant, repeatable (default: all four)")
    parser.add_argument("--paths", type=int, default=T.DEFAULT_PATHS,
                        help=f"refinement paths {T.MIN_PATHS}..{T.MAX_PATHS} (default {T.DEFAULT_PATHS})")
    parser.add_argument("--size", action="append", metavar="WxH",
                        help="input size, repeatable (default: 256x256 and 1280x720)")


def run(args):
    try:
        sizes = tuple(_size(s) for s in args.size) if args.size else DEFAULT_SIZES
        for w, h in sizes:
            T.check_size(h, w, args.paths, what=f"--size {w}x{h}")
        variants = args.variant or list(T.VARIANTS)
        stats = {v: variant_stats(v, args.paths, sizes) for v in variants}
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"Deploy nets, {args.paths} refinement paths, batch 1, float32.")
    print(markdown(stats, sizes), end="")
    return 0
