"""`mrfnet pairs`: whole photos blurred with the authors' recipe into blur/ and sharp/ PNG pairs.

Evaluation sets (what `mrfnet eval --blur DIR/blur --sharp DIR/sharp` and `mrfnet train --val DIR`
read): each photo is resized to 256x256 (the recipe's size) and blurred once, seeded by
(seed, split id, photo index), so the same command gives the same pairs on any machine.
OUT/params.json lists every photo's kernel parameters.

Examples:
  mrfnet pairs --images aerial/images --only models/mrfnet/heldout_aerial.txt --out data/heldout_aerial
  mrfnet pairs --bundled heldout --out data/heldout_bundled
  mrfnet pairs --images aerial/images --only models/mrfnet/val_aerial.txt --draws 3 --out data/val42
"""
import argparse
import json
import shutil
import sys
from pathlib import Path

from . import bundled, holdout, sources
from .errors import DataPrepError
from .imageio import read_image_with_notes, write_image
from .recipe import Recipe, render, sample_streams

SPLIT_ID = 1   # the "test" split's id in data_prep (render.RenderJob.split_id)


def render_pairs(items, folder, seed, split_id=SPLIT_ID, size=256, draws=1):
    """Blurred/sharp PNG pairs of `items` (data_prep Items of kind "bundled" or "sharp") under
    folder/{blur,sharp}/<stem>.png, kernel parameters in folder/params.json. Returns the pairs as
    Items (kind "pair"). Nothing is left behind when a photo cannot be read.

    draws > 1 blurs every photo that many times, with the kernels of seeds seed, seed+1, ...
    (each draw exactly the pair `--seed` of that value gives), as <stem>_s<seed>.png: more pairs
    from few photos, for a validation set whose mean moves less with the kernel draw."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    out, params, recipe = [], {}, Recipe(size=size)
    try:
        for i, it in enumerate(items):
            photo = bundled.load(it.sharp) if it.kind == "bundled" else read_image_with_notes(it.sharp)[0]
            for d in range(draws):
                blurred, sharp, p = render(photo, recipe, sample_streams(seed + d, i, 0, split_id))
                stem = Path(it.name).name.rsplit(".", 1)[0] + (f"_s{seed + d}" if draws > 1 else "")
                write_image(tmp / "blur" / f"{stem}.png", blurred)
                write_image(tmp / "sharp" / f"{stem}.png", sharp)
                params[f"{stem}.png"] = {"source": it.name, **p}
                out.append(stem)
        (tmp / "params.json").write_text(json.dumps({"seed": seed, "draws": draws,
                                                     "split_id": split_id,
                                                     "size": size, "pairs": params},
                                                    indent=1, sort_keys=True) + "\n")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)
    return [sources.Item(name=f"{s}.png", sharp=str(folder / "sharp" / f"{s}.png"),
                         blur=str(folder / "blur" / f"{s}.png"), kind="pair") for s in out]


def add_arguments(p):
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = __doc__.split("\n", 2)[2]
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", help="folder of sharp photos")
    src.add_argument("--bundled", choices=("train", "heldout"),
                     help="the photos scikit-image ships (docs/data.md)")
    p.add_argument("--only", metavar="LIST", help="only the photos named in this list file")
    p.add_argument("--exclude", metavar="LIST", help="leave out the photos named in this list file")
    p.add_argument("--out", required=True, help="folder to write (blur/, sharp/, params.json)")
    p.add_argument("--seed", type=int, default=0, help="seed of the kernel draws (default 0)")
    p.add_argument("--draws", type=int, default=1,
                   help="blur every photo this many times (seeds --seed, --seed+1, ...), named "
                        "<stem>_s<seed>.png (default 1: <stem>.png)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")


def run(args):
    try:
        items = (sources.sharp_folder(args.images) if args.images
                 else sources.bundled_items(args.bundled))
        items = holdout.filter_items(items, only=args.only, exclude=args.exclude)
        if args.draws < 1:
            raise DataPrepError(f"--draws {args.draws}: give 1 or more")
        if Path(args.out).exists() and not args.force:
            raise DataPrepError(f"--out {args.out} exists; use --force to replace it")
        pairs = render_pairs(items, args.out, args.seed, draws=args.draws)
    except DataPrepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(pairs)} pairs of 256x256 to {args.out} (blur/, sharp/, params.json)")
    return 0
