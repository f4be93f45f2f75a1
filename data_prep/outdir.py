"""Crash-safe output folders: build under a hidden temporary name, publish by renaming.

A database folder is complete exactly when it has COMPLETE.json, written last, and it only ever
appears under its final name by a rename. A converter killed midway leaves only
`.NAME.partial-PID` behind, which the next run removes (when that process is gone).
Existing output is replaced only with --force (old copy renamed aside, then deleted).
"""
import json
import os
import shutil
from pathlib import Path

from .errors import OutputExistsError

MARKER = "COMPLETE.json"


def is_complete(path):
    return (Path(path) / MARKER).is_file()


def read_marker(path):
    return json.loads((Path(path) / MARKER).read_text())


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_partials(out):
    """Delete `.NAME.partial-PID` folders of `out` whose process no longer runs; return them."""
    out = Path(out)
    removed = []
    for p in out.parent.glob(f".{out.name}.partial-*"):
        try:
            pid = int(p.name.rsplit("-", 1)[1])
        except ValueError:
            continue
        if pid != os.getpid() and not _pid_alive(pid):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def begin(out, force=False):
    """Check that `out` may be written and return a fresh temporary folder beside it."""
    out = Path(out)
    if out.exists() and not force:
        state = "a finished database" if is_complete(out) else "not a finished database"
        raise OutputExistsError(f"--out {out} already exists ({state}); choose another path, "
                                "or pass --force to replace it")
    if not out.parent.is_dir():
        out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(out)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    return tmp


def finish(tmp, out, marker):
    """Write the marker into `tmp`, then move `tmp` to `out` (replacing an old `out`)."""
    tmp, out = Path(tmp), Path(out)
    marker_tmp = tmp / (MARKER + ".tmp")
    marker_tmp.write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n")
    os.replace(marker_tmp, tmp / MARKER)
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink()
    return out


def abort(tmp):
    shutil.rmtree(tmp, ignore_errors=True)
