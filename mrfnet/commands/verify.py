"""`mrfnet verify DB`: re-read a database folder written by `mrfnet convert` and check it
(data_prep.verify lists the checks). Exit 0 if all is well, 1 with the reasons, 2 on usage errors."""
import sys
from pathlib import Path

from data_prep.verify import verify

EXAMPLE = """
mrfnet verify data/train_lmdb
"""


def add_arguments(parser):
    parser.add_argument("db", metavar="DB", help="database folder written by `mrfnet convert`")
    parser.add_argument("--max-identical", type=float, default=0.05,
                        help="largest allowed fraction of patches whose blurred == sharp (default 0.05)")


def run(args):
    if not Path(args.db).is_dir():
        print(f"error: {args.db}: no such database folder; give the --out folder of `mrfnet convert`",
              file=sys.stderr)
        return 2
    problems, summary = verify(args.db, args.max_identical)
    for split, s in summary.items():
        print(f"{args.db} {split}: {s['patches']} patches, {s['identical']} with blurred == sharp")
    if problems:
        for p in problems:
            print(f"problem: {p}", file=sys.stderr)
        return 1
    print(f"{args.db}: OK")
    return 0
