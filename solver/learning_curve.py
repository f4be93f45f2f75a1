"""Held-out PSNR gain against training hours, over a chain of runs and sessions.

A model that trains for hours does so in several sessions (`mrfnet train --resume`) and may
start from another run's weights (`--weights`). Each session's train records carry `elapsed`
(wall seconds since that session started) and `cpu` (process CPU seconds, all threads); a
session boundary shows as `elapsed` going down. This module adds the sessions up, so that
every validation record gets the total wall and CPU hours behind it, and draws the curve
(`MODEL.md`'s picture) with `mrfnet learning-curve RUN_DIR [RUN_DIR ...] --out PNG`:
runs given in the order they were chained, each continuing the previous one's hours.

`--extrapolate HOURS` answers "is the target within reach in HOURS?": it fits the gain against
iterations (the work done, which does not change when a session switches to `--workers 2`)
twice, as a power law (near straight: the optimistic reading) and as a logarithm (learning
that slows down: the pessimistic one), and draws both on to HOURS at the last session's
seconds per iteration.

`--history FILE` (models/mrfnet/curve.json for the shipped model) keeps the curve across
machines: run directories do not outlive a session's machine, so the validation points of the
runs behind a shipped model are saved there (`--save-history`), and the run directories given
continue its hours and iterations. Its "test" points (`--add-test HOURS GAIN LABEL`: the mean gain
on the test tiles, from `evaluation.model_report`, reported only) are drawn apart from the
validation points, which are what every choice was made on.
"""
import json
import math
import os
import sys

import numpy as np

from solver.runlog import read_log


def run_points(log_path, wall0=0.0, cpu0=0.0, input_psnr=None):
    """([{iteration, wall_h, cpu_h, psnr, ssim, gain_db, s_per_iter}], (total wall s, total
    cpu s), input PSNR) of one run's log, its hours starting at wall0/cpu0 seconds; the gain is
    over the blurred input's PSNR from the log's first validation (else `input_psnr`);
    s_per_iter is the wall seconds per iteration of the session so far (None before its
    second train record)."""
    wall_done = cpu_done = 0.0      # seconds of the sessions before the current one
    last_wall = last_cpu = 0.0
    first = last_it = None          # (elapsed, iteration) of the session's first train record
    points, own_input = [], None
    for r in read_log(log_path):
        if r.get("kind") == "train" and r.get("elapsed") is not None:
            e, c = float(r["elapsed"]), float(r.get("cpu") or 0.0)
            if e < last_wall:           # a new session: bank the previous one
                wall_done, cpu_done = wall_done + last_wall, cpu_done + last_cpu
                first = None
            last_wall, last_cpu, last_it = e, c, r.get("iteration")
            if first is None:
                first = (e, last_it)
        elif r.get("kind") == "val":
            if r.get("input_psnr") is not None and own_input is None:
                own_input = float(r["input_psnr"])
            rate = None
            if first is not None and last_it is not None and last_it > first[1]:
                rate = (last_wall - first[0]) / (last_it - first[1])
            points.append({"iteration": r["iteration"], "psnr": r["psnr"], "ssim": r["ssim"],
                           "wall_h": (wall0 + wall_done + last_wall) / 3600,
                           "cpu_h": (cpu0 + cpu_done + last_cpu) / 3600, "s_per_iter": rate})
    base = own_input if own_input is not None else input_psnr
    for p in points:
        p["gain_db"] = p["psnr"] - base if base is not None else float("nan")
    return points, (wall_done + last_wall, cpu_done + last_cpu), base


def chain_points(run_dirs, start=None):
    """The points of runs chained one after another (each starting from the previous one's
    weights), with hours accumulated over the chain and `step`, the iterations over the chain
    (each run's iterations count on from the previous run's last validated one). `start`
    (a point of an earlier part of the chain, e.g. the history's last) sets where they begin."""
    out, wall, cpu, base, steps = [], 0.0, 0.0, None, 0
    if start:
        wall, cpu, steps = start["wall_h"] * 3600, start["cpu_h"] * 3600, start["step"]
    for d in run_dirs:
        pts, (w, c), base = run_points(os.path.join(d, "train_log.jsonl"), wall, cpu, base)
        if (out or start) and pts and pts[0]["iteration"] == 0:
            pts = pts[1:]               # iteration 0 of a --weights run = the previous run's end
        out += [dict(p, run=os.path.basename(os.path.normpath(d)), step=steps + p["iteration"])
                for p in pts]
        steps = out[-1]["step"] if out else steps
        wall, cpu = wall + w, cpu + c
    return out, wall / 3600, cpu / 3600


def extrapolate(points, hours, from_fraction=0.125):
    """Two fits of gain against chain iterations, over the points past `from_fraction` of the
    last one's iterations (the early start is its own regime): gain = c * step^p (power) and
    gain = a * ln(step) + b (log). Projected on to `hours` of wall time at the last session's
    seconds per iteration. Returns {"power": (c, p), "log": (a, b), "s_per_iter",
    "curves": {name: [(hours, gain), ...]}, "at": {name: gain at `hours`}}."""
    last = points[-1]
    rate = next((p["s_per_iter"] for p in reversed(points) if p.get("s_per_iter")), None)
    use = [p for p in points if p["step"] >= from_fraction * last["step"] and p["step"] > 0]
    if rate is None or len(use) < 3:
        raise ValueError("too few validation points (or no timed session) to fit a curve")
    lx = [math.log(p["step"]) for p in use]
    a, b = np.polyfit(lx, [p["gain_db"] for p in use], 1)
    pos = [(x, p["gain_db"]) for x, p in zip(lx, use) if p["gain_db"] > 0]
    if len(pos) < 3:
        raise ValueError("too few validation points with a positive gain for a power-law fit")
    pw, lc = np.polyfit([x for x, _ in pos], [math.log(g) for _, g in pos], 1)
    fits = {"power": lambda s: math.exp(lc) * s ** pw, "log": lambda s: a * math.log(s) + b}
    end = last["step"] + max(hours - last["wall_h"], 0.0) * 3600 / rate
    ahead = [last["step"] + (end - last["step"]) * i / 50 for i in range(1, 51)]
    curves = {}
    for name, f in fits.items():
        # up to the last point, hours come from the points themselves (sessions ran at
        # different speeds), after it from the last session's rate
        curves[name] = ([(p["wall_h"], f(p["step"])) for p in use]
                        + [(last["wall_h"] + (s - last["step"]) * rate / 3600, f(s)) for s in ahead])
    return {"power": (math.exp(lc), float(pw)), "log": (float(a), float(b)), "s_per_iter": rate,
            "curves": curves,
            "at": {name: f(end) for name, f in fits.items()}, "hours": max(hours, last["wall_h"])}


def load_history(path):
    """{"runs": [{"run", "val_set", "points": [...]}], "test": [...]} of a history file; an
    empty history when the file does not exist yet."""
    if not path or not os.path.exists(path):
        return {"runs": [], "test": []}
    with open(path) as f:
        doc = json.load(f)
    doc.setdefault("runs", [])
    doc.setdefault("test", [])
    return doc


def save_history(path, history, points, val_set):
    """Add the runs of `points` (chain_points output) to the history, replacing runs of the
    same name, and write it atomically."""
    runs = [r for r in history["runs"] if r["run"] not in {p["run"] for p in points}]
    for name in dict.fromkeys(p["run"] for p in points):
        runs.append({"run": name, "val_set": val_set,
                     "points": [{k: v for k, v in p.items() if k != "run"}
                                for p in points if p["run"] == name]})
    doc = dict(history, runs=runs)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def history_points(history):
    return [dict(p, run=r["run"]) for r in history["runs"] for p in r["points"]]


def plot(points, png, title="held-out PSNR gain against training time", fit=None, target=None,
         tests=()):
    from solver.plot import plt, save_figure

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([p["wall_h"] for p in points], [p["gain_db"] for p in points], "o-", ms=3,
            color="tab:blue", label="validation tiles: PSNR gain over the blurred input (dB)")
    if tests:
        ax.plot([t["wall_h"] for t in tests], [t["gain_db"] for t in tests], "s", ms=6,
                color="tab:orange", label="test tiles (reported only, never chosen on)")
        for t in tests:
            ax.annotate(t["label"], (t["wall_h"], t["gain_db"]), textcoords="offset points",
                        xytext=(4, -12), fontsize=7, color="tab:orange")
    styles = {"power": ("tab:green", "power law in iterations"),
              "log": ("tab:red", "logarithm of iterations")}
    for name, curve in (fit or {}).get("curves", {}).items():
        color, what = styles[name]
        ax.plot([h for h, _ in curve], [g for _, g in curve], "--", color=color, lw=1.2,
                label=f"fit, {what}: {fit['at'][name]:+.2f} dB at {fit['hours']:g} h")
    if target is not None:
        ax.axhline(target, color="0.3", ls=":", lw=1, label=f"target {target:+g} dB")
    ax.axhline(0, color="0.5", lw=0.8)
    ax.set_xlabel("training hours (wall clock; see the run for threads)")
    ax.set_ylabel("gain (dB)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title, fontsize=10)
    return save_figure(fig, png)


if __name__ == "__main__":  # kept for old scripts: use `mrfnet learning-curve`
    from mrfnet.cli import main
    sys.exit(main(["learning-curve", *sys.argv[1:]]))
