"""Render a schedule (solver.schedule.paper_schedule) as Caffe's solver.prototxt text.

Our own small renderer rather than prototxt_gen's template because the `caffe train` stages
need fields the single-run template has no reason to know (multistep lr for later stages,
per-stage max_iter, a test net per run dir). Plain text: no Caffe import needed to write it;
tests parse it back with caffe_pb2 to prove Caffe reads it as meant.
"""
import math
import os

from solver.errors import RunConfigError

# Field order of the rendered file (SolverParameter names).
_ORDER = ("train_net", "test_net", "test_iter", "test_interval", "test_initialization", "type",
          "base_lr", "momentum", "momentum2", "delta", "weight_decay", "lr_policy", "gamma",
          "power", "stepsize", "stepvalue", "max_iter", "clip_gradients", "display", "average_loss",
          "snapshot", "snapshot_prefix", "snapshot_after_train", "solver_mode", "random_seed")
_STRINGS = {"train_net", "test_net", "type", "lr_policy", "snapshot_prefix"}
_ENUMS = {"solver_mode"}


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


def _value(name, v):
    if name in _STRINGS:
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
    if name in _ENUMS:
        return str(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def render(params, comments=()):
    """solver.prototxt text: `comments` first (as # lines), then the fields in a fixed order."""
    lines = [f"# {c}" for c in comments]
    for name in _ORDER:
        if name not in params:
            continue
        v = params[name]
        for item in (v if isinstance(v, (list, tuple)) else [v]):
            lines.append(f"{name}: {_value(name, item)}")
    unknown = set(params) - set(_ORDER)
    if unknown:
        raise RunConfigError(f"unknown solver fields {sorted(unknown)}")
    return "\n".join(lines) + "\n"


def write_solver(path, params, comments=()):
    """Write the solver file atomically (temp + rename) and return its path."""
    path = os.fspath(path)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(render(params, comments))
    os.replace(tmp, path)
    return path
