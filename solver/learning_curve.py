"""Held-out PSNR gain against training hours, over a chain of runs and sessions.

A model that trains for hours does so in several sessions (`mrfnet train --resume`) and may
start from another run's weights (`--weights`). Each session's train records carry `elapsed`
(wall seconds since that session started) and `cpu` (process CPU seconds, all threads); a
session boundary shows as `elapsed` going down. This module adds the sessions up, so that
every validation record gets the total wall and CPU hours behind it, and draws the curve
(`MODEL.md`'s picture) with `python -m solver.learning_curve RUN_DIR [RUN_DIR ...] --out PNG`:
runs given in the order they were chained, each continuing the previous one's hours.
"""
import argparse
import os
import sys

from solver.runlog import read_log


def run_points(log_path, wall0=0.0, cpu0=0.0, input_psnr=None):
    """([{iteration, wall_h, cpu_h, psnr, ssim, gain_db}], (total wall s, total cpu s),
    input PSNR) of one run's log, its hours starting at wall0/cpu0 seconds; the gain is over
    the blurred input's PSNR from the log's first validation (else `input_psnr`)."""
    wall_done = cpu_done = 0.0      # seconds of the sessions before the current one
    last_wall = last_cpu = 0.0
    points, own_input = [], None
    for r in read_log(log_path):
        if r.get("kind") == "train" and r.get("elapsed") is not None:
            e, c = float(r["elapsed"]), float(r.get("cpu") or 0.0)
            if e < last_wall:           # a new session: bank the previous one
                wall_done, cpu_done = wall_done + last_wall, cpu_done + last_cpu
            last_wall, last_cpu = e, c
        elif r.get("kind") == "val":
            if r.get("input_psnr") is not None and own_input is None:
                own_input = float(r["input_psnr"])
            points.append({"iteration": r["iteration"], "psnr": r["psnr"], "ssim": r["ssim"],
                           "wall_h": (wall0 + wall_done + last_wall) / 3600,
                           "cpu_h": (cpu0 + cpu_done + last_cpu) / 3600})
    base = own_input if own_input is not None else input_psnr
    for p in points:
        p["gain_db"] = p["psnr"] - base if base is not None else float("nan")
    return points, (wall_done + last_wall, cpu_done + last_cpu), base


def chain_points(run_dirs):
    """The points of runs chained one after another (each starting from the previous one's
    weights), with hours accumulated over the chain."""
    out, wall, cpu, base = [], 0.0, 0.0, None
    for d in run_dirs:
        pts, (w, c), base = run_points(os.path.join(d, "train_log.jsonl"), wall, cpu, base)
        if out and pts and pts[0]["iteration"] == 0:
            pts = pts[1:]               # iteration 0 of a --weights run = the previous run's end
        out += [dict(p, run=os.path.basename(os.path.normpath(d))) for p in pts]
        wall, cpu = wall + w, cpu + c
    return out, wall / 3600, cpu / 3600


def plot(points, png, title="held-out PSNR gain against training time"):
    from solver.plot import plt, save_figure

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([p["wall_h"] for p in points], [p["gain_db"] for p in points], "o-", ms=3,
            color="tab:blue", label="PSNR gain over the blurred input (dB)")
    ax.axhline(0, color="0.5", lw=0.8)
    ax.set_xlabel("training hours (wall clock; see the run for threads)")
    ax.set_ylabel("gain (dB)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title, fontsize=10)
    return save_figure(fig, png)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m solver.learning_curve", description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="run directories, in the order they were chained")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--title", default="held-out PSNR gain against training time")
    args = p.parse_args(argv)
    missing = [d for d in args.runs if not os.path.isfile(os.path.join(d, "train_log.jsonl"))]
    if missing:
        print(f"error: no train_log.jsonl in {', '.join(missing)}", file=sys.stderr)
        return 2
    points, wall_h, cpu_h = chain_points(args.runs)
    if not points:
        print("error: the runs have no validation records (train with --val)", file=sys.stderr)
        return 2
    plot(points, args.out, args.title)
    last = points[-1]
    print(f"{args.out}: {len(points)} points; last {last['gain_db']:+.2f} dB at "
          f"{last['wall_h']:.2f} h wall; total {wall_h:.2f} h wall, {cpu_h:.2f} CPU hours")
    return 0


if __name__ == "__main__":
    sys.exit(main())
