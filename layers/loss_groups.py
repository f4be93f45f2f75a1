"""The paper's "four loss weight groups": per-scale loss weights that move from coarse to fine.

A schedule is plain data, a list of groups ordered by start:
    [{"start_fraction": 0.0, "weights": [w_1, ..., w_K]}, ...]   (weights coarse -> fine)
Group g is active from start_fraction_g * max_iter until the next group starts. The pycaffe
trainer asks `weights_at(groups, it / max_iter)` and sets the layers' weights while it runs;
the `caffe train` route turns the groups into stages (`stage_iterations`), one prototxt each.

Defaults (docs/layers.md gives the reasoning): 4 groups switching at 0, 1/4, 1/2, 3/4 of
training; group g focuses on position f_g = g*(K-1)/3 along the scales (coarsest for g = 0,
finest for g = 3) with w_k proportional to 2^-|k - f_g|, normalised so the weights sum to K
(the loss stays on the scale of eq. (5) with unit weights, whatever the group).
"""
import math

import numpy as np

from layers.errors import LossGroupError, LossWeightError
from layers.scale_loss import validate_weights

NUM_GROUPS = 4
MAX_PATHS = 6


def default_groups(num_paths):
    """Four groups for `num_paths` scales, emphasis sliding from coarsest to finest."""
    if not isinstance(num_paths, (int, np.integer)) or not 1 <= num_paths <= MAX_PATHS:
        raise LossGroupError(f"default_groups: num_paths must be an integer in 1..{MAX_PATHS}, "
                             f"got {num_paths!r}")
    groups = []
    k = np.arange(num_paths, dtype=np.float64)
    for g in range(NUM_GROUPS):
        focus = g * (num_paths - 1) / (NUM_GROUPS - 1)
        w = 2.0 ** (-np.abs(k - focus))
        w = w * (num_paths / w.sum())
        groups.append({"start_fraction": g / NUM_GROUPS,
                       "weights": [round(float(x), 6) for x in w]})
    return groups


def validate_groups(groups, num_paths, where="loss weight groups"):
    """Check a schedule and return a normalised copy (floats, lists). Raises LossGroupError."""
    if not isinstance(groups, (list, tuple)) or not groups:
        raise LossGroupError(f"{where}: expected a non-empty list of groups, got {groups!r}")
    out = []
    prev = None
    for i, g in enumerate(groups):
        if not isinstance(g, dict) or set(g) != {"start_fraction", "weights"}:
            raise LossGroupError(
                f"{where}: group {i} must be a dict with exactly the keys "
                f"'start_fraction' and 'weights', got {g!r}")
        try:
            f = float(g["start_fraction"])
        except (TypeError, ValueError):
            raise LossGroupError(f"{where}: group {i}: start_fraction must be a number, "
                                 f"got {g['start_fraction']!r}") from None
        if not 0.0 <= f < 1.0:
            raise LossGroupError(f"{where}: group {i}: start_fraction must be in [0, 1), got {f}")
        if i == 0 and f != 0.0:
            raise LossGroupError(f"{where}: the first group must start at 0.0, got {f}")
        if prev is not None and f <= prev:
            raise LossGroupError(
                f"{where}: start fractions must increase strictly; group {i} starts at {f} "
                f"after {prev}")
        try:
            w = validate_weights(g["weights"], num_paths, where=f"{where}: group {i}")
        except LossWeightError as exc:
            raise LossGroupError(str(exc)) from None
        out.append({"start_fraction": f, "weights": [float(x) for x in w]})
        prev = f
    return out


def active_group(groups, progress_fraction):
    """Index of the group active at `progress_fraction` (= iteration / max_iter, >= 0).

    Fractions >= 1 keep the last group (training past the plan keeps its final emphasis).
    """
    try:
        p = float(progress_fraction)
    except (TypeError, ValueError):
        raise LossGroupError(f"weights_at: progress must be a number, got {progress_fraction!r}") from None
    if not p >= 0.0:  # also rejects NaN
        raise LossGroupError(f"weights_at: progress must be >= 0, got {progress_fraction!r}")
    return max(i for i, g in enumerate(groups) if g["start_fraction"] <= p or i == 0)


def weights_at(groups, progress_fraction):
    """Weights of the group active at `progress_fraction` (see active_group)."""
    return list(groups[active_group(groups, progress_fraction)]["weights"])


def _start_iter(fraction, max_iter):
    # First integer iteration `it` with it / max_iter >= fraction (same rule as weights_at).
    return int(math.ceil(fraction * max_iter - 1e-9))


def group_starts(groups, max_iter):
    """Iterations where a group after the first begins (the lines on the loss plot)."""
    return [_start_iter(g["start_fraction"], max_iter) for g in groups[1:]]


def stage_iterations(groups, max_iter):
    """Stages for running `caffe train` once per group: a list of
    {"stage": i, "group": g, "start_iter": a, "end_iter": b, "weights": [...]} with a < b.

    Iteration `it` (0-based, as in Caffe) belongs to the stage with a <= it < b; a stage's solver
    gets `max_iter: b` and resumes from the previous stage's snapshot at iteration a. Groups that
    would get no iteration (tiny max_iter) are left out, consistent with `weights_at`.
    """
    if not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise LossGroupError(f"stage_iterations: max_iter must be a positive integer, got {max_iter!r}")
    starts = [_start_iter(g["start_fraction"], max_iter) for g in groups] + [max_iter]
    stages = []
    for gi, g in enumerate(groups):
        a, b = starts[gi], min(starts[gi + 1], max_iter)
        if a < b:
            stages.append({"stage": len(stages), "group": gi, "start_iter": a, "end_iter": b,
                           "weights": list(g["weights"])})
    return stages
