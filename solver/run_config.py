"""A training run's configuration: the options of `mrfnet train` resolved against their defaults
and, on --resume, against the run's own run.json; and run.json itself, which records them.

Kept apart from the training loop (solver.trainer) because it needs no Caffe: the command reads
DEFAULTS to know its options, and a resumed run must read back exactly what an earlier session
(of this or an older version) wrote.
"""
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np

from prototxt_gen.topology import (DEFAULT_PATHS, DEFAULT_VARIANT, TopologyError, check_paths,
                                   check_variant)
from solver import plan as PL
from solver import schedule as S
from solver.errors import MissingInputError, RunConfigError
from solver.snapshots import latest_state

# Defaults of every option (None = derived from the schedule / the paper).
DEFAULTS = {
    "variant": DEFAULT_VARIANT, "paths": DEFAULT_PATHS, "train_db": None, "val": None,
    "train_images": None, "exclude": None, "weights": None,
    "out": None, "iters": None, "epochs": None, "dataset": "gopro",
    "batch": S.PAPER["total_batch"], "crop": S.PAPER["crop"], "base_lr": S.PAPER["base_lr"],
    "stepsize": None, "snapshot_every": None, "val_every": None, "seed": 0,
    "loss_groups": None, "val_max": 16, "val_max_side": None, "keep_snapshots": 3,
    "gpu": None, "max_seconds": None, "resume": None, "progress": True, "workers": None,
    "lr_policy": "step", "clip_gradients": None, "loss": "l2", "augment": None,
}
# Options that only steer this session; everything else is the run's identity in run.json.
SESSION_KEYS = ("resume", "max_seconds", "progress", "gpu", "workers")
# Changing these on resume would make the saved solver state meaningless.
FIXED_ON_RESUME = ("variant", "paths")
RUN_JSON = "run.json"


def resolve_config(given):
    """(config dict, solverstate path or None): DEFAULTS <- run.json's config (on resume) <- the
    options given (None = not given). Raises RunConfigError/MissingInputError with the fix."""
    given = {k: v for k, v in dict(given).items() if v is not None}
    unknown = set(given) - set(DEFAULTS)
    if unknown:
        raise RunConfigError(f"unknown training option(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    state, saved = None, {}
    if given.get("resume"):
        state, saved = _resumed(given)
    cfg = dict(DEFAULTS)
    cfg.update({k: v for k, v in saved.items() if k in DEFAULTS})
    cfg.update(given)
    _check(cfg, given, state)
    cfg["out"] = str(Path(cfg["out"]).resolve())
    for key in ("train_db", "val", "train_images", "exclude", "weights"):
        if cfg[key]:
            if not Path(cfg[key]).exists():
                raise MissingInputError(f"--{key.replace('_', '-')} {cfg[key]}: not found")
            cfg[key] = str(Path(cfg[key]).resolve())
    # keep the groups themselves (not a file name) so a resumed run uses exactly the same ones
    cfg["loss_groups"] = PL.load_groups(cfg["loss_groups"], cfg["paths"])
    return cfg, state


def _resumed(given):
    """(solverstate, saved config) of --resume (a run directory or a .solverstate); sets
    given["out"] to the run directory unless given."""
    r = Path(given["resume"]).resolve()
    if r.is_dir():
        state = latest_state(r)
        run_dir = r
    elif r.suffix == ".solverstate" and r.exists():
        state = r
        run_dir = Path(given["out"]) if given.get("out") else r.parent.parent
    else:
        raise MissingInputError(f"--resume {r}: give a run directory or a .solverstate file")
    rj = run_dir / RUN_JSON
    if not rj.exists():
        raise MissingInputError(f"--resume: {rj} not found (was {run_dir} made by mrfnet train?)")
    saved = json.loads(rj.read_text())["config"]
    given.setdefault("out", str(run_dir))
    for k in FIXED_ON_RESUME:
        if k in given and given[k] != saved.get(k):
            raise RunConfigError(f"--{k} {given[k]} differs from the run being resumed "
                                 f"({saved.get(k)}); start a new --out instead")
    return state, saved


def _check(cfg, given, state):
    """Options that contradict each other; --iters/--epochs given now win over saved ones."""
    if bool(cfg["train_db"]) == bool(cfg["train_images"]):
        raise RunConfigError("give --train-db (an LMDB or HDF5 made by `mrfnet convert`) or "
                             "--train-images (a folder of sharp photos, blurred on the fly), "
                             "one of the two" + (", not both" if cfg["train_db"] else ""))
    if cfg["augment"] and not cfg["train_images"]:
        raise RunConfigError("--augment applies to --train-images (samples rendered while "
                             "training); a --train-db holds its augmentation already")
    if cfg["exclude"] and not cfg["train_images"]:
        raise RunConfigError("--exclude applies to --train-images (with --train-db, leave the "
                             "images out when converting: `mrfnet convert --exclude`)")
    if state and given.get("weights"):
        raise RunConfigError("--weights starts a new run from a .caffemodel; --resume continues "
                             "one from its solver state: give one of the two")
    if not cfg["out"]:
        raise RunConfigError("--out is required (the run directory)")
    if cfg["iters"] is not None and cfg["epochs"] is not None:
        if "iters" in given and "epochs" not in given:
            cfg["epochs"] = None
        elif "epochs" in given and "iters" not in given:
            cfg["iters"] = None
        else:
            raise RunConfigError("give --iters or --epochs, not both")
    try:
        check_variant(cfg["variant"])
        check_paths(cfg["paths"])
    except TopologyError as exc:
        raise RunConfigError(str(exc)) from None


def saved_max_iter(run_dir):
    """max_iter of the schedule in an existing run.json (None if there is none)."""
    path = Path(run_dir) / RUN_JSON
    if not path.exists():
        return None
    return json.loads(path.read_text()).get("schedule", {}).get("max_iter")


def versions(caffe_version):
    """Versions of what produced the run (for run.json)."""
    def git_head():
        try:
            return subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                                  capture_output=True, text=True, timeout=5).stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            return None
    import google.protobuf
    return {"python": platform.python_version(), "numpy": np.__version__,
            "caffe": caffe_version, "protobuf": google.protobuf.__version__,
            "git": git_head(), "platform": platform.platform()}


def write_run_json(run_dir, cfg, sched, state, argv, caffe_version):
    """Add this session to run_dir/run.json (written whole, atomically): the run's command,
    seed, versions, config (without SESSION_KEYS), schedule and every session so far."""
    path = Path(run_dir) / RUN_JSON
    old = json.loads(path.read_text()) if path.exists() else {}
    sessions = old.get("sessions", [])
    sessions.append({"command": argv, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                     "resume_from": str(state) if state else None,
                     "max_seconds": cfg["max_seconds"], "gpu": cfg["gpu"]})
    saved = {k: v for k, v in cfg.items() if k not in SESSION_KEYS}
    if old.get("config") and state:
        changed = {k: (old["config"].get(k), v) for k, v in saved.items()
                   if old["config"].get(k) != v}
        if changed:
            sessions[-1]["changed_on_resume"] = changed
    doc = {"command": old.get("command", argv), "seed": cfg["seed"],
           "versions": versions(caffe_version), "config": saved,
           "schedule": {k: v for k, v in sched.items()}, "sessions": sessions}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, path)
