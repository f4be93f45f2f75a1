"""Which photos are held out for evaluation, by image, never trained on: one rule, one list file.

The rule (used for the aerial tiles the shipped model is trained on, `models/mrfnet/MODEL.md`):
group the file names by class (everything before the last "_", e.g. `rsscn7_aGrass` for
`rsscn7_aGrass_a001.jpg`), sort each group, and hold out every `every`-th name starting at
`offset` (default every 8th from the 4th: 18 of 144 per class, 12.5%). A list file holds one
name per line ('#' comments allowed); `mrfnet convert --exclude/--only` and
`mrfnet train --exclude` read it.
"""
from pathlib import Path

from .errors import DataPrepError, MissingPathError

EVERY, OFFSET = 8, 3


def class_of(name):
    """The class of a file name: its stem up to the last '_' (the whole stem if it has none)."""
    stem = Path(name).name.rsplit(".", 1)[0]
    return stem.rsplit("_", 1)[0] if "_" in stem else stem


def holdout_names(names, every=EVERY, offset=OFFSET):
    """The held-out subset of `names` (file names): per class, sorted, every `every`-th from
    `offset`. Every class with at least `offset + 1` images gives at least one."""
    if every < 2 or not 0 <= offset < every:
        raise DataPrepError(f"hold-out rule needs every >= 2 and 0 <= offset < every, got "
                            f"every={every}, offset={offset}")
    groups = {}
    for n in names:
        groups.setdefault(class_of(n), []).append(Path(n).name)
    out = []
    for cls in sorted(groups):
        out += sorted(groups[cls])[offset::every]
    return out


def write_list(path, names, header=()):
    text = "".join(f"# {h}\n" for h in header) + "".join(f"{n}\n" for n in names)
    Path(path).write_text(text)
    return str(path)


def read_list(path, option="--exclude"):
    """File names from a list file (one per line, '#' comments); a clear error when missing."""
    p = Path(path)
    if not p.is_file():
        raise MissingPathError(f"{option} {path}: no such list file (one image file name per line)")
    names = [ln.strip() for ln in p.read_text().splitlines()]
    names = [n for n in names if n and not n.startswith("#")]
    if not names:
        raise DataPrepError(f"{option} {path}: the list is empty")
    return names


def select(items, names, keep, option):
    """Items whose file name is (keep=True) or is not (keep=False) in `names`; every listed
    name must match an item, so a typo or the wrong folder is an error, not a silent no-op."""
    wanted = set(names)
    found = {Path(it.name).name for it in items}
    missing = sorted(wanted - found)
    if missing:
        shown = ", ".join(missing[:5]) + (f" ... ({len(missing)} in all)" if len(missing) > 5 else "")
        raise DataPrepError(f"{option}: {shown} not among the images given; check the list and --images")
    return [it for it in items if (Path(it.name).name in wanted) == keep]


def filter_items(items, only=None, exclude=None):
    """`items` narrowed by the list files given as --only (keep those) and --exclude (drop
    those); the one place the list options are applied, so every command treats them alike."""
    for option, path, keep in (("--only", only, True), ("--exclude", exclude, False)):
        if path:
            items = select(items, read_list(path, option), keep=keep, option=option)
    return items
