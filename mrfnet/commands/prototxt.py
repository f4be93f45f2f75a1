"""`mrfnet prototxt`: write (or --check) models/<variant>/*.prototxt for the four variants."""
import sys

from prototxt_gen import files
from prototxt_gen import topology as T

EXAMPLE = """
mrfnet prototxt --out models            # what `make prototxt` runs
mrfnet prototxt --check                 # exit 1 if a committed file differs from the generator
"""


def add_arguments(parser):
    parser.add_argument("--out", default="models", help="output directory (default: models)")
    parser.add_argument("--variant", action="append", choices=T.VARIANTS, metavar="NAME",
                        help=f"variant to write, repeatable (default: all of {', '.join(T.VARIANTS)})")
    parser.add_argument("--paths", type=int, default=T.DEFAULT_PATHS,
                        help=f"refinement paths {T.MIN_PATHS}..{T.MAX_PATHS} (default "
                             f"{T.DEFAULT_PATHS}; other counts go to <out>/<variant>_p<N>/)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 listing files that differ from fresh output")


def run(args):
    variants = args.variant or list(T.VARIANTS)
    try:
        if args.check:
            bad = files.check(args.out, variants, args.paths)
            for line in bad:
                print(f"differs from generator: {line}", file=sys.stderr)
            if bad:
                print("run `make prototxt` (mrfnet prototxt --out models) and commit", file=sys.stderr)
                return 1
            print(f"ok: {len(variants) * len(files.FILES)} files match the generator")
            return 0
        for path in files.write(args.out, variants, args.paths):
            print(path)
        return 0
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
