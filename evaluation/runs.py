"""Run result files: what `mrfnet eval` writes and `mrfnet tables` reads.

One JSON per run, self-describing, so any table cell can name the file it came from:
- summary.json, schema "mrfnet-eval/1": variant, dataset label, pairs, SSIM variant, baseline
  (blurred input) scores, and per backend the mean scores and Table IV timing;
- memory.json, schema "mrfnet-memory/1": Table III peak RSS per batch size.
Per-image numbers go to per_image.csv beside summary.json.
"""
import csv
import hashlib
import json
import math
import os
import platform
import subprocess
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from .errors import RunFileError

EVAL_SCHEMA = "mrfnet-eval/1"
MEMORY_SCHEMA = "mrfnet-memory/1"
SCHEMAS = (EVAL_SCHEMA, MEMORY_SCHEMA)


def sha256(path, chunk=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _git_commit():
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10, cwd=Path(__file__).resolve().parents[1])
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def provenance():
    """When, where and with which code a run was made."""
    return {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "host": {"machine": platform.machine(), "processor": platform.processor() or None,
                     "cpus": os.cpu_count(), "python": platform.python_version()},
            "code_commit": _git_commit()}


def _clean(v):
    """JSON has no inf/nan: identical images' PSNR (inf) becomes the string "inf"."""
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if v != v else ("inf" if v > 0 else "-inf")
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v


def write_json(path, obj):
    """Write `obj` as indented JSON atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(_clean(obj), f, indent=2, sort_keys=False)
        f.write("\n")
    os.replace(tmp, path)
    return path


def write_rows_csv(path, rows):
    """Per-image rows (evaluation.evaluate.ImageRow) as CSV, floats with full precision."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dicts = [r.as_dict() for r in rows]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(dicts[0]) if dicts else ["backend", "name"])
        w.writeheader()
        for d in dicts:
            w.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in d.items()})
    return path


def load_run(path):
    """A run dict with "_path" added, or None when the JSON is not one of ours."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise RunFileError(f"{path}: cannot read run file ({exc})") from exc
    except json.JSONDecodeError as exc:
        raise RunFileError(f"{path}: not valid JSON ({exc}); re-run `mrfnet eval` for it") from exc
    if not isinstance(data, dict) or data.get("schema") not in SCHEMAS:
        return None
    need = {EVAL_SCHEMA: ("variant", "dataset", "results", "baseline", "ssim_variant"),
            MEMORY_SCHEMA: ("variant", "results")}[data["schema"]]
    missing = [k for k in need if k not in data]
    if missing:
        raise RunFileError(f"{path}: run file lacks {', '.join(missing)}; was it edited by hand?")
    data["_path"] = str(path)
    return data


def find_runs(dirs):
    """All run files (ours) under the given folders or files, sorted by path."""
    runs = []
    for d in dirs:
        d = Path(d)
        if d.is_file():
            files = [d]
        elif d.is_dir():
            files = sorted(d.rglob("*.json"))
        else:
            raise RunFileError(f"--runs {d}: no such folder or file")
        for f in files:
            run = load_run(f)
            if run is not None:
                runs.append(run)
    return runs
