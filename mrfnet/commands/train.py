"""`mrfnet train`: the pycaffe training route (solver.trainer) as a command.

Exit codes: 0 finished (or stopped by --max-seconds, with a snapshot), 1 a --workers process
failed (its error is shown), 2 bad input,
3 the loss became NaN/inf (the message names the last good snapshot), 128+signal number when
stopped by SIGINT (130) or SIGTERM (143) after writing a snapshot.
"""
import signal
import sys

from solver import plan as PL
from solver.errors import TrainingDiverged
from solver.parallel import WorkerError
from solver.run_config import DEFAULTS

EXAMPLE = """
mrfnet train --train-db data/train_lmdb --val data/heldout --out runs/r1 --iters 2000
mrfnet train --train-images aerial/images --exclude models/mrfnet/heldout_aerial.txt --out runs/a
mrfnet train --resume runs/r1 --max-seconds 3600      # continue a run for at most an hour
"""


def add_arguments(p):
    PL.add_common_arguments(p)
    p.add_argument("--train-images", default=None, metavar="DIR",
                   help="instead of --train-db: a folder of sharp photos, resized to 256x256 and "
                        "blurred afresh with the authors' recipe for every sample (a new kernel "
                        "each time; solver/fresh_data.py)")
    p.add_argument("--exclude", default=None, metavar="LIST",
                   help="with --train-images: leave out the photos named in this list file "
                        "(one file name per line, e.g. models/mrfnet/heldout_aerial.txt)")
    p.add_argument("--augment", choices=("dihedral",), default=None,
                   help="with --train-images: also flip top-bottom and rotate by a multiple of "
                        "90 degrees at random (the 8 symmetries of the square; the recipe's "
                        "kernel set is closed under them); default: the left-right mirror only")
    p.add_argument("--weights", default=None, metavar="CAFFEMODEL",
                   help="start a new run from these weights (a .caffemodel of the same variant "
                        "and paths; iteration, lr and Adam state start afresh); to continue a "
                        "run with its solver state use --resume")
    p.add_argument("--val", default=None,
                   help="held-out set: LMDB, HDF5, or a folder with blur/ and sharp/ subfolders")
    p.add_argument("--val-max", type=int, default=None,
                   help="validate on at most this many pairs (default 16)")
    p.add_argument("--val-max-side", type=int, default=None,
                   help="centre-crop validation images to at most this side (default: whole "
                        "image, cropped to a multiple of the net's stride)")
    p.add_argument("--resume", default=None,
                   help="a run directory (its latest snapshot) or a .solverstate; the run's other "
                        "options come from its run.json unless given again")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="wall-time budget: stop cleanly with a snapshot before exceeding it")
    p.add_argument("--keep-snapshots", type=int, default=None,
                   help="keep the latest N snapshots (default 3; 0 keeps all)")
    p.add_argument("--gpu", type=int, default=None,
                   help="train on this GPU (one process, one GPU); default CPU")
    p.add_argument("--workers", type=int, default=None,
                   help="CPU only: split every batch across this many processes of one thread "
                        "each, averaging their gradients (solver/parallel.py); default one per "
                        "core, a divisor of --batch; 1 = one process using every core")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None,
                   help="no progress bar on stderr")


def config_from_args(args):
    """The options the user gave (None = not given) as a trainer config dict."""
    return {k: getattr(args, k) for k in DEFAULTS if getattr(args, k, None) is not None}


def run(args):
    from solver.trainer import train
    try:
        summary = train(config_from_args(args), argv=list(sys.argv))
    except TrainingDiverged as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except WorkerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    status = summary["status"]
    it, total = summary["iterations"], summary["max_iter"]
    lines = [f"{status}: iteration {it} of {total}, snapshot {summary['last_snapshot']}"]
    if summary["best"]:
        b = summary["best"]
        lines.append(f"best: PSNR {b['psnr']:.2f} dB, SSIM {b['ssim']:.4f} at iteration "
                     f"{b['iteration']} -> {b['model']}")
    lines.append(f"log: {summary['log']}; curves: {summary['loss_png']}")
    if status in ("interrupted", "budget") and it < total:
        lines.append(f"continue with: mrfnet train --resume {summary['run_dir']}")
    print("\n".join(lines))
    if status == "interrupted":
        return 128 + int(getattr(signal, summary["signal"] or "SIGINT"))
    return 0

