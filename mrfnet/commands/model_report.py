"""`mrfnet model-report`: the evaluation tables of a model card (models/<variant>/MODEL.md): the
test aerial tiles, the bundled held-out photos and GOPRO test frames (evaluation.model_report)."""
import sys

from evaluation.model_report import TEST_LIST, report
from inference.models import resolve_model

EXAMPLE = """
mrfnet model-report --aerial AERIAL --gopro GOPRO --out results/model_report
mrfnet model-report --weights runs/r1/best.caffemodel --aerial AERIAL \\
    --aerial-list models/mrfnet/val_aerial.txt --out results/val_report
"""


def add_arguments(p):
    p.add_argument("--variant", default="mrfnet")
    p.add_argument("--weights", help="caffemodel (default: the variant's shipped one)")
    p.add_argument("--deploy", help="deploy prototxt (default: the variant's)")
    p.add_argument("--aerial", help="folder holding the aerial tiles of the held-out list")
    p.add_argument("--aerial-list", "--heldout-list", dest="aerial_list", default=str(TEST_LIST),
                   help="the aerial tiles to report (default the test tiles, "
                        "models/mrfnet/test_aerial.txt; --heldout-list is the old name)")
    p.add_argument("--gopro", help="GOPRO_Large-style root with a test/ split")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)


def run(args):
    try:
        deploy, weights = resolve_model(args.variant, args.deploy, args.weights)
        text, _ = report(weights, deploy, args.out, args.aerial, args.gopro, args.aerial_list,
                         args.seed)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(text)
    return 0
