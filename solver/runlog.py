"""The training log: one JSON object per line (train_log.jsonl), flushed as written.

Record kinds: "train" (iteration, lr, loss, loss_r1..loss_rK, weights, group, seconds, elapsed),
"val" (iteration, psnr, ssim, best, seconds) and "event" (start, resume, interrupt, budget,
diverged, done). JSON lines survive a killed process (at most the last line is cut) and are
trivial to load into pandas or plot again.
"""
import json
import math
import os


def _clean(v):
    # JSON has no NaN/inf: write them as strings so the file stays valid and the value visible.
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v


class RunLog:
    """Append-only JSON-lines writer."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self._f = open(self.path, "a", buffering=1)

    def write(self, kind, **fields):
        rec = {"kind": kind, **fields}
        self._f.write(json.dumps(_clean(rec), sort_keys=False) + "\n")
        self._f.flush()
        return rec

    def close(self):
        if not self._f.closed:
            self._f.close()


def read_log(path):
    """All complete records of a log (a cut last line from a killed process is skipped)."""
    out = []
    if not os.path.exists(path):
        return out
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def truncate_after(path, iteration):
    """Drop train/val records past `iteration` (work lost since the snapshot being resumed),
    so that a resumed run's log has every iteration exactly once. Returns the number dropped."""
    recs = read_log(path)
    keep = [r for r in recs if r.get("kind") == "event" or int(r.get("iteration", 0)) <= iteration]
    dropped = len(recs) - len(keep)
    if dropped:
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            for r in keep:
                f.write(json.dumps(r) + "\n")
        os.replace(tmp, path)
    return dropped
