"""`mrfnet learning-curve`: held-out PSNR gain against training hours over a chain of runs and
sessions, with optional fits and a history file that outlives the runs (solver.learning_curve)."""
import os
import sys

from solver.learning_curve import (chain_points, extrapolate, history_points, load_history, plot,
                                   save_history)

EXAMPLE = """
mrfnet learning-curve runs/aerial --out runs/aerial/curve.png
mrfnet learning-curve runs/aerial --out curve.png --extrapolate 10 --target 3
mrfnet learning-curve --history models/mrfnet/curve.json --out curve.png
"""


def add_arguments(p):
    p.add_argument("runs", nargs="*", help="run directories, in the order they were chained")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--title", default="held-out PSNR gain against training time")
    p.add_argument("--extrapolate", type=float, metavar="HOURS",
                   help="fit the gain against iterations and draw it on to HOURS of wall time "
                        "at the last session's speed")
    p.add_argument("--target", type=float, metavar="DB", help="draw the target gain as a line")
    p.add_argument("--history", metavar="JSON",
                   help="earlier points of the chain (e.g. models/mrfnet/curve.json); the runs "
                        "given continue it")
    p.add_argument("--save-history", action="store_true",
                   help="write the runs' validation points into --history")
    p.add_argument("--val-set", default="",
                   help="with --save-history: the validation set the runs used (recorded)")
    p.add_argument("--add-test", nargs=3, action="append", default=[],
                   metavar=("HOURS", "GAIN", "LABEL"),
                   help="with --history: record a test-tile gain (dB) of the model at HOURS")


def run(args):
    if (args.save_history or args.add_test) and not args.history:
        print("error: --save-history and --add-test need --history FILE", file=sys.stderr)
        return 2
    missing = [d for d in args.runs if not os.path.isfile(os.path.join(d, "train_log.jsonl"))]
    if missing:
        print(f"error: no train_log.jsonl in {', '.join(missing)}", file=sys.stderr)
        return 2
    history = load_history(args.history)
    earlier = history_points(history)
    new, wall_h, cpu_h = chain_points(args.runs, earlier[-1] if earlier else None)
    for hours, gain, label in args.add_test:
        try:
            history["test"].append({"wall_h": float(hours), "gain_db": float(gain), "label": label})
        except ValueError:
            print(f"error: --add-test {hours} {gain} {label}: HOURS and GAIN are numbers",
                  file=sys.stderr)
            return 2
    if args.save_history or args.add_test:
        save_history(args.history, history, new, args.val_set)
    points = earlier + new
    if not args.runs and earlier:
        wall_h, cpu_h = earlier[-1]["wall_h"], earlier[-1]["cpu_h"]
    if not points:
        print("error: the runs have no validation records (train with --val)", file=sys.stderr)
        return 2
    fit = None
    if args.extrapolate is not None:
        try:
            fit = extrapolate(points, args.extrapolate)
        except ValueError as e:
            print(f"error: --extrapolate: {e}", file=sys.stderr)
            return 2
    plot(points, args.out, args.title, fit, args.target, history["test"])
    last = points[-1]
    print(f"{args.out}: {len(points)} points; last {last['gain_db']:+.2f} dB at "
          f"{last['wall_h']:.2f} h wall, iteration {last['step']} of the chain; total "
          f"{wall_h:.2f} h wall, {cpu_h:.2f} CPU hours")
    if fit:
        (c, pw), (a, b) = fit["power"], fit["log"]
        print(f"fits over iterations n (last session {fit['s_per_iter']:.3f} s per iteration): "
              f"power {c:.3g} * n^{pw:.3f} -> {fit['at']['power']:+.2f} dB at {fit['hours']:g} h; "
              f"log {a:.3f} * ln(n) {b:+.3f} -> {fit['at']['log']:+.2f} dB at {fit['hours']:g} h")
    return 0
