"""`mrfnet bench` (what `make bench` runs): speed and memory figures from one run on this machine
into OUT/benchmarks.md and OUT/benchmarks.json (the measurements are the benchmarks package's)."""
import json
import sys
from pathlib import Path

from benchmarks.bench import markdown, measure, write_atomic

EXAMPLE = """
make bench                                     # builds the stock Caffe to compare, then:
mrfnet bench --out docs --baseline-caffe STOCK_BUILD --before-caffe BUILD_0003
mrfnet bench --out results/bench --quick       # no paper-sized training, no 1280x720 forwards
mrfnet bench --out docs --val data/val42       # + the int8 model's PSNR cost on validation pairs
mrfnet bench --out docs --report-only          # rewrite benchmarks.md from benchmarks.json
"""


def add_arguments(p):
    p.add_argument("--out", default="docs", help="folder for benchmarks.md/.json (default docs)")
    p.add_argument("--quick", action="store_true",
                   help="skip the batch-16 x 256x256 training measurement and the 1280x720 forwards")
    p.add_argument("--report-only", action="store_true",
                   help="measure nothing: rewrite OUT/benchmarks.md from OUT/benchmarks.json")
    p.add_argument("--baseline-caffe", metavar="DIR",
                   help="a Caffe build without this project's patches (make bench builds one with "
                        "MRFNET_CAFFE_PATCHES=0 tools/caffe/build.sh): adds 'stock Caffe' rows")
    p.add_argument("--val", metavar="DIR",
                   help="validation pairs (blur/ + sharp/, as `mrfnet pairs` writes) for the int8 "
                        "model's PSNR cost against fp32 (make bench VAL=DIR)")
    p.add_argument("--before-caffe", metavar="DIR",
                   help="this project's build at an earlier patch level (make bench builds one with "
                        "MRFNET_CAFFE_PATCHES=0003): adds 'patches 0001-0003' rows")


def run(args):
    out = Path(args.out)
    if args.report_only:
        try:
            res = json.loads((out / "benchmarks.json").read_text())
        except (OSError, ValueError) as exc:
            print(f"error: --report-only needs a readable {out / 'benchmarks.json'} from a "
                  f"previous `mrfnet bench --out {out}` ({exc})", file=sys.stderr)
            return 2
        write_atomic(out / "benchmarks.md", markdown(res))
        print(f"bench: rewrote {out / 'benchmarks.md'} from {out / 'benchmarks.json'}")
        return 0
    for flag, value, level in (("--baseline-caffe", args.baseline_caffe, "0"),
                               ("--before-caffe", args.before_caffe, "0003")):
        if value and not (Path(value) / "python" / "caffe" / "_caffe.so").is_file():
            print(f"error: {flag} {value}: no built pycaffe there (python/caffe/_caffe.so); build "
                  f"one with MRFNET_CAFFE_PATCHES={level} tools/caffe/build.sh .venv/bin/python",
                  file=sys.stderr)
            return 2
    out.mkdir(parents=True, exist_ok=True)
    if args.val and not (Path(args.val) / "blur").is_dir():
        print(f"error: --val {args.val}: no blur/ folder there (make one with mrfnet pairs "
              "--images AERIAL --only models/mrfnet/val_aerial.txt --draws 3 --out DIR)",
              file=sys.stderr)
        return 2
    res = measure(quick=args.quick, baseline_caffe=args.baseline_caffe,
                  before_caffe=args.before_caffe, val=args.val)
    write_atomic(out / "benchmarks.json", json.dumps(res, indent=1, default=str) + "\n")
    write_atomic(out / "benchmarks.md", markdown(res))
    print(f"bench: wrote {out / 'benchmarks.md'} and {out / 'benchmarks.json'}")
    return 0
