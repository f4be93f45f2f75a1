"""A schedule (solver.schedule.paper_schedule) as the fields of a run's solver.prototxt.

The fields depend on the run (multistep lr for later `caffe train` stages, per-stage max_iter, a
test net per run dir); the text is written by the project's one solver writer
(prototxt_gen.solver_spec.render). No Caffe import; tests parse the files back with caffe_pb2.
"""
import math
import os

from prototxt_gen.solver_spec import SolverSpecError, render
from solver.errors import RunConfigError


def solver_params(schedule, net, snapshot_prefix, test_net=None, solver_mode="CPU",
                  random_seed=None, display=None, max_iter=None, base_lr=None,
                  stepvalues=None, snapshot=None, clip_gradients=None):
    """SolverParameter fields (dict) for `schedule`, with per-run overrides.

    stepvalues: a list switches the policy to "multistep" (used by later `caffe train` stages
    so that their lr continues the single-run "step" curve although their iteration restarts at 0).
    snapshot: 0 disables Caffe's own periodic snapshots (the pycaffe trainer takes its own).
    clip_gradients: Caffe's L2-norm cap on the whole gradient (None: no clipping, the paper's).
    A schedule with lr_policy "poly" writes power and max_iter and no stepsize.
    """
    if solver_mode not in ("CPU", "GPU"):
        raise RunConfigError(f"solver_mode must be CPU or GPU, got {solver_mode!r}")
    max_iter = schedule["max_iter"] if max_iter is None else int(max_iter)
    if max_iter < 1:
        raise RunConfigError(f"max_iter must be >= 1, got {max_iter}")
    p = {
        "train_net": str(net),
        "type": schedule["type"],
        "base_lr": schedule["base_lr"] if base_lr is None else float(base_lr),
        "momentum": schedule["momentum"],
        "momentum2": schedule["momentum2"],
        "delta": schedule["delta"],
        "weight_decay": schedule["weight_decay"],
        "gamma": schedule["gamma"],
        "max_iter": max_iter,
        "display": display if display is not None else max(1, min(20, max_iter // 10 or 1)),
        "average_loss": 1,
        "snapshot": schedule["snapshot"] if snapshot is None else int(snapshot),
        "snapshot_prefix": str(snapshot_prefix),
        "snapshot_after_train": True,
        "solver_mode": solver_mode,
    }
    if stepvalues is None and schedule.get("lr_policy") == "poly":
        p["lr_policy"] = "poly"
        p["power"] = schedule["power"]
    elif stepvalues is None:
        p["lr_policy"] = schedule["lr_policy"]
        p["stepsize"] = schedule["stepsize"]
    else:
        p["lr_policy"] = "multistep"
        p["stepvalue"] = [int(v) for v in stepvalues]
    if test_net is not None and schedule.get("test_iter"):
        p["test_net"] = str(test_net)
        p["test_iter"] = schedule["test_iter"]
        p["test_interval"] = schedule["test_interval"]
        p["test_initialization"] = False
    if random_seed is not None:
        p["random_seed"] = int(random_seed)
    if clip_gradients is not None:
        if not (float(clip_gradients) > 0 and math.isfinite(float(clip_gradients))):
            raise RunConfigError(f"clip_gradients must be a positive number, got {clip_gradients!r}")
        p["clip_gradients"] = float(clip_gradients)
    return p


def write_solver(path, params, comments=()):
    """Write the solver file atomically (temp + rename) and return its path."""
    path = os.fspath(path)
    tmp = path + ".tmp"
    try:
        text = render(params, comments)
    except SolverSpecError as exc:
        raise RunConfigError(str(exc)) from None
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    return path
