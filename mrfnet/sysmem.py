"""Memory as Linux reports it (/proc), and the fresh-process forward probe.

The one reader of /proc/meminfo and /proc/self/status for inference, evaluation and the
benchmarks. A leaf: it imports nothing of the project, so the backends, the probe
(inference.memprobe) and the evaluation tools can all import it without importing each other.
Off Linux every reader returns None and callers fall back.
"""
import json
import os
import subprocess
import sys

PROBE_MODULE = "inference.memprobe"


def _field_kib(path, field):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def available_bytes():
    """MemAvailable of /proc/meminfo in bytes (what can be allocated without swapping), or
    None where there is none."""
    kib = _field_kib("/proc/meminfo", "MemAvailable")
    return None if kib is None else kib * 1024


def status_bytes(field):
    """A memory field of /proc/self/status (VmRSS, VmHWM, RssAnon, ...) in bytes; None where
    there is none (not Linux)."""
    kib = _field_kib("/proc/self/status", field)
    return None if kib is None else kib * 1024


def measure_forward(deploy, weights, backend="opencv", side=256, timeout=300):
    """Peak growth in bytes of one forward at side x side, measured in a fresh process
    (`python -m inference.memprobe`: a peak measured inside a long-lived process is too small,
    as the allocator reuses memory that earlier work freed); None when it cannot be measured
    here (no /proc, the child failed)."""
    cmd = [sys.executable, "-m", PROBE_MODULE, str(deploy), str(weights),
           "--backend", backend, "--side", str(side)]
    env = dict(os.environ, GLOG_minloglevel="2")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        return int(json.loads(proc.stdout.strip().splitlines()[-1])["peak_growth_bytes"])
    except (OSError, subprocess.SubprocessError, ValueError, KeyError, IndexError):
        return None
