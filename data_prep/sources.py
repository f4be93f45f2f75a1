"""Where images come from: a list of Items, each either a blurred/sharp pair or a sharp photo.

- GOPRO_Large layout: ROOT/{train,test}/<sequence>/{blur|blur_gamma, sharp}/<frame>.png;
  `blur` (the linear variant most papers use) by default, `blur_gamma` on request.
- paired folders: --blur DIR --sharp DIR, matched by path relative to each folder (subfolders
  allowed); names without a partner are an error that lists them.
- sharp-only folders: --images DIR (every image below it), blurred by the recipe.
- bundled: photos from scikit-image's wheel (bundled.py).
Items are small and picklable; pixels are read in the worker that renders them.
"""
from dataclasses import dataclass
from pathlib import Path

from . import bundled
from .errors import DataPrepError, MissingPathError, PairMismatchError
from .imageio import IMAGE_EXTENSIONS

GOPRO_BLUR_KINDS = ("blur", "blur_gamma")


@dataclass(frozen=True)
class Item:
    """One source image: `sharp` path (or bundled name) and, for real pairs, the `blur` path."""
    name: str            # stable, human-readable id (relative path or bundled photo name)
    sharp: str           # file path, or bundled photo name when kind == "bundled"
    blur: str = ""       # file path of the real blurred image ("" for synthetic sources)
    kind: str = "pair"   # "pair" | "sharp" | "bundled"


def _require_dir(path, option):
    path = Path(path)
    if not path.is_dir():
        raise MissingPathError(f"{option} {path}: no such directory; check the path")
    return path


def list_images(folder):
    """Image files below `folder` as {relative posix path: Path}, sorted."""
    files = sorted(p for p in Path(folder).rglob("*")
                   if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))
    return {p.relative_to(folder).as_posix(): p for p in files}


def _unmatched_message(what, names, limit=20):
    shown = ", ".join(names[:limit]) + (f", ... ({len(names)} in all)" if len(names) > limit else "")
    return f"{what}: {shown}"


def paired_folders(blur_dir, sharp_dir):
    """Items for --blur DIR --sharp DIR, matched by relative path; unmatched names -> error."""
    blur_dir = _require_dir(blur_dir, "--blur")
    sharp_dir = _require_dir(sharp_dir, "--sharp")
    blurs, sharps = list_images(blur_dir), list_images(sharp_dir)
    only_blur = sorted(set(blurs) - set(sharps))
    only_sharp = sorted(set(sharps) - set(blurs))
    if only_blur or only_sharp:
        parts = []
        if only_blur:
            parts.append(_unmatched_message(f"in {blur_dir} without a sharp partner", only_blur))
        if only_sharp:
            parts.append(_unmatched_message(f"in {sharp_dir} without a blurred partner", only_sharp))
        raise PairMismatchError("pairs are matched by file name; " + "; ".join(parts)
                                + ". Rename or remove them.")
    if not blurs:
        raise DataPrepError(f"--blur {blur_dir}: no images found ({', '.join(IMAGE_EXTENSIONS)})")
    return [Item(name=n, sharp=str(sharps[n]), blur=str(blurs[n]), kind="pair") for n in sorted(blurs)]


def gopro(root, split="train", blur_kind="blur"):
    """Items of a GOPRO_Large split (`blur_kind` 'blur' or 'blur_gamma')."""
    if blur_kind not in GOPRO_BLUR_KINDS:
        raise DataPrepError(f"--gopro-blur must be one of {', '.join(GOPRO_BLUR_KINDS)}, got {blur_kind!r}")
    root = _require_dir(root, "--root")
    split_dir = root / split
    if not split_dir.is_dir():
        found = sorted(p.name for p in root.iterdir() if p.is_dir())
        raise MissingPathError(f"--root {root}: no '{split}' folder (found: {', '.join(found) or 'nothing'}); "
                               "expected GOPRO_Large layout ROOT/{train,test}/<sequence>/{blur,sharp}/")
    items = []
    for seq in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        bdir, sdir = seq / blur_kind, seq / "sharp"
        if not bdir.is_dir() or not sdir.is_dir():
            raise MissingPathError(f"{seq}: needs both '{blur_kind}/' and 'sharp/' folders "
                                   "(GOPRO_Large layout); use --gopro-blur to pick blur or blur_gamma")
        for pair in paired_folders(bdir, sdir):
            items.append(Item(name=f"{seq.name}/{pair.name}", sharp=pair.sharp, blur=pair.blur))
    if not items:
        raise DataPrepError(f"{split_dir}: no sequences with images found")
    return items


def sharp_folder(folder):
    """Items for a folder of sharp photos (blurred by the recipe)."""
    folder = _require_dir(folder, "--images")
    files = list_images(folder)
    if not files:
        raise DataPrepError(f"--images {folder}: no images found ({', '.join(IMAGE_EXTENSIONS)})")
    return [Item(name=n, sharp=str(p), kind="sharp") for n, p in files.items()]


def bundled_items(split="train"):
    """Items for the photos bundled with scikit-image (see bundled.py)."""
    return [Item(name=n, sharp=n, kind="bundled") for n in bundled.names(split)]


def split_items(items, test_fraction, seed):
    """Split items (not patches, so no photo is on both sides) into (train, test) by a seeded draw."""
    import numpy as np
    if not 0 <= test_fraction < 1:
        raise DataPrepError(f"--test-fraction must be in [0, 1), got {test_fraction}")
    n_test = int(round(len(items) * test_fraction))
    if test_fraction > 0 and n_test == 0 and len(items) > 1:
        n_test = 1
    order = np.random.default_rng([int(seed), 7]).permutation(len(items))
    test_idx = set(order[:n_test].tolist())
    train = [it for i, it in enumerate(items) if i not in test_idx]
    test = [it for i, it in enumerate(items) if i in test_idx]
    return train, test
