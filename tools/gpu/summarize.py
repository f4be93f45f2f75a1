"""Summarise a tools/gpu/run_on_device.sh run: seconds per training iteration, loss, GPU memory,
the deploy net's forward time. Reads train.log, time.log, gpu_memory.csv and run.log in --out
(plus the script's phase file), writes summary.json and summary.md there. Standard library
only: it runs under the lent machine's Python as well as the project's."""
import argparse
import json
import re
import statistics
from datetime import datetime
from pathlib import Path

# glog: I1130 18:22:33.123456 12345 solver.cpp:231] Iteration 20, loss = 0.0123 (glog 0.6 and
# later write the year too: I20261130 ...)
GLOG = re.compile(r"^[IWEF](\d{4})?(\d\d)(\d\d) (\d\d):(\d\d):(\d\d)\.(\d{6})\s+\d+\s+\S+\] (.*)$")
ITERATION = re.compile(r"^Iteration (\d+), loss = (\S+)")
SNAPSHOT = re.compile(r"Snapshotting to binary proto file .*_iter_(\d+)\.caffemodel")
AVERAGE = re.compile(r"^Average (Forward pass|Backward pass|Forward-Backward): ([\d.eE+-]+) ms")


def glog_lines(path):
    """(seconds, message) for each glog line of a log (a date without a year is taken as 2001's:
    one run does not span New Year)."""
    out = []
    if not Path(path).is_file():
        return out
    for line in Path(path).read_text(errors="replace").splitlines():
        m = GLOG.match(line)
        if m:
            y, mo, d, h, mi, s, us = (int(x) if x else 2001 for x in m.groups()[:7])
            t = datetime(y, mo, d, h, mi, s, us).timestamp()
            out.append((t, m.group(8)))
    return out


def parse_train(path):
    lines = glog_lines(path)
    points = []   # (seconds, iteration, loss)
    result = {"iterations": 0}
    for t, msg in lines:
        m = ITERATION.match(msg)
        if m:
            points.append((t, int(m.group(1)), float(m.group(2))))
        m = SNAPSHOT.search(msg)
        if m:
            result["iterations"] = int(m.group(1))
    if points:
        result["iterations"] = max(result["iterations"], points[-1][1])
        result["loss_first"], result["loss_last"] = points[0][2], points[-1][2]
    # Rate from the display lines after the first one (the first iteration holds the set-up).
    timed = points[1:] if len(points) >= 3 else points
    if len(timed) >= 2 and timed[-1][1] > timed[0][1]:
        result["seconds_per_iteration"] = round((timed[-1][0] - timed[0][0]) / (timed[-1][1] - timed[0][1]), 4)
        result["timed_iterations"] = [timed[0][1], timed[-1][1]]
    return result


def parse_time(path):
    result = {}
    for _, msg in glog_lines(path):
        m = AVERAGE.match(msg)
        if m:
            key = {"Forward pass": "forward_ms", "Backward pass": "backward_ms",
                   "Forward-Backward": "forward_backward_ms"}[m.group(1)]
            result[key] = round(float(m.group(2)), 2)
    return result


def parse_gpu_memory(path):
    """Peak memory.used (MiB) and mean utilisation per phase; phases are the '# name epoch'
    marker lines written between the samples."""
    phases, phase = {}, "start"
    if not Path(path).is_file():
        return phases
    for line in Path(path).read_text(errors="replace").splitlines():
        if line.startswith("# "):
            parts = line[2:].split()
            if len(parts) == 2 and parts[1].isdigit():
                phase = parts[0]
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 3:
            continue
        try:
            mem, util = float(fields[1]), float(fields[2])
        except ValueError:
            continue
        p = phases.setdefault(phase, {"samples": 0, "peak_mib": 0.0, "utils": []})
        p["samples"] += 1
        p["peak_mib"] = max(p["peak_mib"], mem)
        p["utils"].append(util)
    for p in phases.values():
        p["mean_utilization_pct"] = round(statistics.mean(p.pop("utils")), 1) if p["samples"] else None
    return phases


def parse_phases(path):
    marks = {}
    if Path(path).is_file():
        for line in Path(path).read_text().splitlines():
            name, _, value = line.partition(" ")
            if value.strip().lstrip("-").isdigit():
                marks[name] = int(value)
    return marks


def gpu_name(run_log):
    """The nvidia-smi line under its CSV header in run.log: name, driver, total memory."""
    lines = Path(run_log).read_text(errors="replace").splitlines() if Path(run_log).is_file() else []
    for i, line in enumerate(lines[:-1]):
        if line.startswith("name, driver_version"):
            name, driver, total = [f.strip() for f in lines[i + 1].split(",") + ["", "", ""]][:3]
            return {"name": name, "driver": driver, "memory_total": total}
    return {}


def summarize(out, phases_file, mode, setting):
    out = Path(out)
    marks = parse_phases(phases_file)
    s = {"mode": mode, "setting": setting, "gpu": gpu_name(out / "run.log"),
         "train": parse_train(out / "train.log"), "time": parse_time(out / "time.log"),
         "gpu_memory": parse_gpu_memory(out / "gpu_memory.csv"),
         "model": "mrfnet_gpu.caffemodel" if (out / "mrfnet_gpu.caffemodel").is_file() else None}
    if "train" in marks and "trained" in marks:
        s["train"]["wall_seconds"] = marks["trained"] - marks["train"]
    if "data" in marks and "train" in marks:
        s["data_seconds"] = marks["train"] - marks["data"]
    (out / "summary.json").write_text(json.dumps(s, indent=2) + "\n")
    t, tm, mem = s["train"], s["time"], s["gpu_memory"]
    rows = [("mode", mode), ("setting", setting),
            ("GPU", " ".join(str(v) for v in s["gpu"].values()) or "-"),
            ("training iterations", t.get("iterations", "-")),
            ("seconds per iteration", t.get("seconds_per_iteration", "-")),
            ("loss first / last (smoothed)", f"{t.get('loss_first', '-')} / {t.get('loss_last', '-')}"),
            ("GPU memory peak, training", f"{mem.get('train', {}).get('peak_mib', '-')} MiB"),
            ("GPU utilisation, training (mean)", f"{mem.get('train', {}).get('mean_utilization_pct', '-')} %"),
            ("deploy forward", f"{tm.get('forward_ms', '-')} ms"),
            ("deploy forward + backward", f"{tm.get('forward_backward_ms', '-')} ms"),
            ("GPU memory peak, caffe time", f"{mem.get('time', {}).get('peak_mib', '-')} MiB")]
    md = ["| what | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    (out / "summary.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return s


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out")
    ap.add_argument("--rate", metavar="LOG",
                    help="only print the seconds per iteration of this caffe train log (the device "
                         "script's first run, which sets the poly schedule's last iteration)")
    ap.add_argument("--phases", default="")
    ap.add_argument("--mode", default="gpu")
    ap.add_argument("--setting", default="")
    a = ap.parse_args(argv)
    if a.rate:
        print(parse_train(a.rate).get("seconds_per_iteration", ""))
        return 0
    if not a.out:
        ap.error("--out is required")
    summarize(a.out, a.phases, a.mode, a.setting)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
