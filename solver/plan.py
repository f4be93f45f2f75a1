"""Options shared by `mrfnet train` and `mrfnet caffe-stages`, and the schedule of a run:
the paper's schedule (solver.schedule) with the user's overrides applied and explained."""
import json
from pathlib import Path

from layers.errors import LayersError
from layers.loss_groups import default_groups, validate_groups
from layers.scale_loss import PENALTIES
from prototxt_gen.topology import DEFAULT_PATHS, DEFAULT_VARIANT, MAX_PATHS, MIN_PATHS, VARIANTS
from solver import schedule as S
from solver.errors import MissingInputError, RunConfigError


def add_common_arguments(p):
    """Options with the same meaning in both routes (defaults None = "the paper's value")."""
    p.add_argument("--variant", choices=VARIANTS, default=None,
                   help=f"network variant (default {DEFAULT_VARIANT})")
    p.add_argument("--paths", type=int, default=None,
                   help=f"refinement paths P, {MIN_PATHS}..{MAX_PATHS} (default {DEFAULT_PATHS})")
    p.add_argument("--train-db", default=None, help="training LMDB (6-channel Datums) or HDF5 (.h5 / .txt list)")
    p.add_argument("--out", default=None, help="run directory (created): nets, solver, logs, snapshots")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--iters", type=int, default=None, help="total iterations (instead of epochs)")
    g.add_argument("--epochs", type=int, default=None,
                   help="epochs over the training DB (default: the paper's, see --dataset)")
    p.add_argument("--dataset", choices=S.DATASETS, default=None,
                   help="which of the paper's epoch counts to use: visdrone 70, gopro 50 (default gopro)")
    p.add_argument("--batch", type=int, default=None,
                   help=f"total batch per iteration (default the paper's {S.PAPER['total_batch']})")
    p.add_argument("--crop", type=int, default=None,
                   help=f"random crop side, a multiple of 2^(P-1) (default {S.PAPER['crop']})")
    p.add_argument("--base-lr", type=float, default=None, help=f"default {S.PAPER['base_lr']:g}")
    p.add_argument("--stepsize", type=int, default=None,
                   help="iterations between lr halvings (default 10 epochs)")
    p.add_argument("--lr-policy", choices=S.LR_POLICIES, default=None,
                   help="step: the paper's halving every --stepsize (default); poly: Caffe's "
                        "linear decay from --base-lr to 0 at the last iteration (power 1)")
    p.add_argument("--clip-gradients", type=float, default=None, metavar="NORM",
                   help="Caffe's clip_gradients: scale the whole gradient down to this L2 norm "
                        "when it is larger (default: no clipping, as the paper)")
    p.add_argument("--loss", choices=PENALTIES, default=None,
                   help="per-scale penalty: l2 = the paper's eq. (5) (default); l1 or "
                        "charbonnier (sqrt(d^2 + 1e-6)) with the same per-scale normalisation")
    p.add_argument("--snapshot-every", type=int, default=None,
                   help=f"iterations between snapshots (default {S.DEFAULT_SNAPSHOT_EPOCHS} epochs)")
    p.add_argument("--val-every", type=int, default=None,
                   help="iterations between validations (default 1 epoch)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    p.add_argument("--loss-groups", default=None,
                   help="JSON file: list of {\"start_fraction\": f, \"weights\": [w_1..w_P]} "
                        "(default layers.loss_groups.default_groups(P))")


def load_groups(spec, paths):
    """Loss-weight groups from a JSON file path, an already-parsed list, or None (defaults)."""
    if spec is None:
        return default_groups(paths)
    where = "loss weight groups"
    if isinstance(spec, (str, Path)):
        p = Path(spec)
        if not p.exists():
            raise MissingInputError(f"--loss-groups {spec}: no such file")
        try:
            spec = json.loads(p.read_text())
        except ValueError as exc:
            raise RunConfigError(f"--loss-groups {p}: not valid JSON ({exc})") from None
        where = f"--loss-groups {p}"
    try:
        return validate_groups(spec, paths, where=where)
    except LayersError as exc:
        raise RunConfigError(str(exc)) from None


def make_schedule(num_patches, *, total_batch=None, gpus=1, crop=None, epochs=None, iters=None,
                  dataset=None, base_lr=None, stepsize=None, snapshot_every=None, val_size=0,
                  val_batch=None, val_every=None, lr_policy=None):
    """paper_schedule(...) for the options of a run (None = the paper's value)."""
    return S.paper_schedule(num_patches, dataset=dataset or "gopro", epochs=epochs,
                            total_batch=total_batch, gpus=gpus, crop=crop, val_size=val_size,
                            val_batch=val_batch, base_lr=base_lr, iters=iters, stepsize=stepsize,
                            snapshot_every=snapshot_every, val_every=val_every,
                            lr_policy=lr_policy or "step")
