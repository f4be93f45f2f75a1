"""`mrfnet tables`: the paper's Tables II-V from our `mrfnet eval` runs (evaluation.tables)."""
import sys
from pathlib import Path

from evaluation.errors import EvaluationError
from evaluation.runs import find_runs
from evaluation.tables import render

EXAMPLE = """
mrfnet tables --runs results/ --out docs/tables.md
"""


def add_arguments(p):
    p.add_argument("--runs", nargs="+", required=True, metavar="DIR",
                   help="folders (searched recursively) or files of `mrfnet eval` run JSONs")
    p.add_argument("--out", default="docs/tables.md", metavar="FILE",
                   help="markdown file to write (default %(default)s)")


def run(args):
    try:
        runs = find_runs(args.runs)
        if not runs:
            raise EvaluationError(f"--runs {' '.join(args.runs)}: no run files (summary.json / "
                                  "memory.json from `mrfnet eval`) found")
        text = render(runs, args.out)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"tables: {len(runs)} run file(s) -> {out}", file=sys.stderr)
    return 0
