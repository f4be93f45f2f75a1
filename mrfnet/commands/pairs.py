"""`mrfnet pairs`: whole photos blurred once with the authors' recipe into blur/ and sharp/ PNG
pairs, the evaluation sets of `mrfnet eval` and `mrfnet train --val` (data_prep.pairs)."""
import sys
from pathlib import Path

from data_prep import holdout, sources
from data_prep.errors import DataPrepError
from data_prep.pairs import render_pairs

EXAMPLE = """
mrfnet pairs --images aerial/images --only models/mrfnet/heldout_aerial.txt --out data/heldout_aerial
mrfnet pairs --bundled heldout --out data/heldout_bundled
mrfnet pairs --images aerial/images --only models/mrfnet/val_aerial.txt --draws 3 --out data/val42
"""


def add_arguments(p):
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", help="folder of sharp photos")
    src.add_argument("--bundled", choices=("train", "heldout"),
                     help="the photos scikit-image ships (docs/data.md)")
    p.add_argument("--only", metavar="LIST", help="only the photos named in this list file")
    p.add_argument("--exclude", metavar="LIST", help="leave out the photos named in this list file")
    p.add_argument("--out", required=True, help="folder to write (blur/, sharp/, params.json)")
    p.add_argument("--seed", type=int, default=0, help="seed of the kernel draws (default 0)")
    p.add_argument("--draws", type=int, default=1,
                   help="blur every photo this many times (seeds --seed, --seed+1, ...), named "
                        "<stem>_s<seed>.png (default 1: <stem>.png)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")


def run(args):
    try:
        items = (sources.sharp_folder(args.images) if args.images
                 else sources.bundled_items(args.bundled))
        items = holdout.filter_items(items, only=args.only, exclude=args.exclude)
        if args.draws < 1:
            raise DataPrepError(f"--draws {args.draws}: give 1 or more")
        if Path(args.out).exists() and not args.force:
            raise DataPrepError(f"--out {args.out} exists; use --force to replace it")
        pairs = render_pairs(items, args.out, args.seed, draws=args.draws)
    except DataPrepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(pairs)} pairs of 256x256 to {args.out} (blur/, sharp/, params.json)")
    return 0
