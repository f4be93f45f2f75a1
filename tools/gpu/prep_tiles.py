"""Sharp training tiles for a lent GPU run (tools/gpu/run_on_device.sh --tiles), small enough
to travel with the device call.

The device tool carries at most 64 MiB per call: the working tree, the Caffe bundle and these
tiles together. The run renders them there with `mrfnet convert --source sharp --size 256`,
whose first step resizes every photo to 256x256 (the authors' recipe), so the tiles are resized
here with the converter's own imresize (a 256x256 tile passes through it unchanged) and written
as JPEG (quality 90 by default; PNG keeps them exact but is about 5 times larger). Held-out
tiles never travel: every name of --exclude is left out, matched by stem so that a re-encoded
copy (.png for .jpg) is caught too. When all training tiles do not fit, an even subset of each
class is kept (seeded), as many as fit.

  python tools/gpu/prep_tiles.py --images AERIAL            # -> .gpu/aerial_tiles (make gpu-tiles)
"""
import argparse
import random
import subprocess
import sys
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from data_prep import holdout, sources  # noqa: E402
from data_prep.errors import DataPrepError  # noqa: E402
from data_prep.imageio import read_image  # noqa: E402
from data_prep.resize import imresize  # noqa: E402
from mrfnet.caffe_log import quiet_caffe  # noqa: E402

MIB = 1 << 20
CARRY_LIMIT_MIB = 64          # the device tool's limit on what travels with one call
BUNDLE = ROOT / ".gpu" / "caffe-gpu-bundle.tar.xz"
BUNDLE_GUESS_MIB = 16         # the bundle's size when it is not built here yet (docs/gpu.md: 15 MB)
MARGIN_MIB = 1                # for files that change before the call (a log, a new snapshot)
MARKER = "TILES.txt"          # written last; a folder with it may be replaced by a new run


def stem(name):
    return Path(name).name.rsplit(".", 1)[0]


def working_tree_bytes(root=ROOT):
    """What the device tool sends besides `carry`: tracked and untracked-but-not-ignored files."""
    out = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         capture_output=True, check=True).stdout
    paths = {root / p for p in out.decode().split("\0") if p}
    return sum(p.stat().st_size for p in paths if p.is_file() and not p.is_symlink())


def carry_budget_mib(bundle=BUNDLE):
    """MiB left for the tiles: the limit less the working tree, the bundle and a margin."""
    bundle_mib = Path(bundle).stat().st_size / MIB if Path(bundle).is_file() else BUNDLE_GUESS_MIB
    return CARRY_LIMIT_MIB - working_tree_bytes() / MIB - bundle_mib - MARGIN_MIB


def training_items(images, exclude):
    """The tiles of `images` whose stem is in no --exclude list."""
    held = {stem(n) for path in exclude for n in holdout.read_list(path)}
    items = sources.sharp_folder(images)
    return [it for it in items if stem(it.name) not in held], len(items)


def spread_order(items, seed):
    """Items in an order whose every prefix is spread evenly over the classes: a seeded shuffle
    within each class, then one of each class in turn."""
    rng = random.Random(seed)
    groups = {}
    for it in sorted(items, key=lambda it: it.name):
        groups.setdefault(holdout.class_of(it.name), []).append(it)
    for g in groups.values():
        rng.shuffle(g)
    order = []
    for i in range(max(map(len, groups.values()), default=0)):
        order += [g[i] for _, g in sorted(groups.items()) if i < len(g)]
    return order


def encode(item, size, ext, quality):
    """The tile's file contents: resized as the converter would, then encoded."""
    img = read_image(item.sharp)
    if size and img.shape[:2] != (size, size):
        img = imresize(img, (size, size))
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext == ".jpg" else []
    ok, buf = cv2.imencode(ext, img, params)
    if not ok:
        raise DataPrepError(f"{item.sharp}: cannot encode as {ext}")
    return buf.tobytes()


def main(argv=None):
    quiet_caffe()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--images", required=True, help="folder of sharp tiles (e.g. the aerial tiles)")
    ap.add_argument("--out", default=str(ROOT / ".gpu" / "aerial_tiles"),
                    help="folder to write (default .gpu/aerial_tiles, git-ignored: carry it)")
    ap.add_argument("--exclude", action="append", default=None, metavar="LIST",
                    help="list file of names never to copy (default models/mrfnet/heldout_aerial.txt; "
                         "repeatable)")
    ap.add_argument("--size", type=int, default=256, help="resize to SIZE x SIZE; 0 keeps them (default 256)")
    ap.add_argument("--format", choices=("jpg", "png"), default="jpg")
    ap.add_argument("--quality", type=int, default=90, help="JPEG quality (default 90)")
    ap.add_argument("--max-mib", type=float, default=None,
                    help="size limit of the tiles (default: what the 64 MiB carry leaves after this "
                         "checkout's working tree, the bundle and 1 MiB)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the subset when not all fit")
    a = ap.parse_args(argv)
    exclude = a.exclude or [str(ROOT / "models" / "mrfnet" / "heldout_aerial.txt")]
    out = Path(a.out)
    try:
        if out.exists() and any(out.iterdir()) and not (out / MARKER).is_file():
            raise DataPrepError(f"--out {out} exists and was not written by this script; give another")
        items, found = training_items(a.images, exclude)
        if not items:
            raise DataPrepError(f"--images {a.images}: no tiles left after --exclude")
        budget = carry_budget_mib() if a.max_mib is None else a.max_mib
        ext = "." + a.format
        kept, total = [], 0
        for it in spread_order(items, a.seed):
            data = encode(it, a.size, ext, a.quality)
            if total + len(data) > budget * MIB:
                break
            kept.append((it, data))
            total += len(data)
        if not kept:
            raise DataPrepError(f"not one tile fits in {budget:.1f} MiB")
    except DataPrepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if out.exists():
        for p in out.iterdir():
            p.unlink()
    q = f" quality {a.quality}" if ext == ".jpg" else ""
    out.mkdir(parents=True, exist_ok=True)
    for it, data in kept:
        (out / (stem(it.name) + ext)).write_bytes(data)
    line = (f"{len(kept)} of {len(items)} training tiles ({found - len(items)} of {found} left out by "
            f"{', '.join(Path(e).name for e in exclude)}), {a.size or 'original size'}"
            f"{'x' + str(a.size) if a.size else ''} {a.format.upper()}{q}: {total / MIB:.1f} MiB "
            f"of the {budget:.1f} MiB allowed")
    (out / MARKER).write_text(f"# tools/gpu/prep_tiles.py from {Path(a.images).name}/\n{line}\n")
    print(f"wrote {out}: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
