"""`mrfnet caffe-stages`: the loss-weight groups as consecutive `caffe train` runs (solver.stages).

Exit codes: 0 done (or --dry-run), 1 a stage failed, 2 bad input, 130 interrupted.
"""
import signal
import sys

from solver import plan as PL
from solver.stages import CHAINS, StageFailed, StageInterrupted, build, run_stages

EXAMPLE = """
mrfnet caffe-stages --train-db data/train_lmdb --val-db data/test_lmdb --out runs/stages --dry-run
mrfnet caffe-stages --train-db data/train_lmdb --out runs/stages --gpus 0,1,2,3
"""


def add_arguments(p):
    PL.add_common_arguments(p)
    p.add_argument("--val-db", default=None, help="validation LMDB/HDF5 (test net with PSNR/SSIM)")
    p.add_argument("--gpus", default=None,
                   help="GPU ids for `caffe train -gpu`, e.g. 0,1,2,3 (default: CPU); the total "
                        "batch is split over them")
    p.add_argument("--dry-run", action="store_true",
                   help="write the files and print the `caffe train` commands without running them")
    p.add_argument("--chain", choices=CHAINS, default=None,
                   help="how a stage starts from the previous one: 'snapshot' (-snapshot "
                        "prev.solverstate: iteration, lr and Adam state continue; default) or "
                        "'weights' (-weights prev.caffemodel: fresh solver per stage)")
    p.add_argument("--restart-lr", action="store_true",
                   help="with --chain weights: start every stage at base_lr with the 'step' "
                        "policy instead of continuing the single-run lr curve")
    p.add_argument("--display", type=int, default=None,
                   help="Caffe prints loss and lr every N iterations (default 20)")
    p.add_argument("--from-stage", type=int, default=1,
                   help="run stages from this one (1-based); the previous stage's final snapshot "
                        "must exist")
    p.add_argument("--caffe", default=None,
                   help="caffe command to run (default: the one beside this Python, else PATH)")


def run(args):
    cfg = {k: getattr(args, k) for k in vars(args) if not k.startswith("_")}
    try:
        plan = build(cfg)
        print(f"run dir: {plan['run_dir']}")
        for line in plan["schedule"]["explanation"]:
            print(f"  {line}")
        for st in plan["stages"]:
            print(f"  stage {st['stage']}: iterations {st['start_iter']}..{st['end_iter']}, "
                  f"loss weights {st['weights']}")
        if args.dry_run:
            print("\n# commands (also in run_stages.sh); for CUDA machines the solvers say "
                  "solver_mode GPU when --gpus is given:")
            print("export GLOG_logtostderr=1")
            for c in plan["commands"]:
                print(c)
            return 0
        summary = run_stages(plan, caffe=args.caffe, from_stage=args.from_stage)
        print(f"final weights: {summary['final']}")
        return 0
    except StageInterrupted as exc:
        print(f"mrfnet caffe-stages: {exc}", file=sys.stderr)
        return 128 + signal.SIGINT
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except StageFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
