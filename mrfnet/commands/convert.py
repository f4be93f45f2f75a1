"""`mrfnet convert`: render blurred/sharp patches into an LMDB or HDF5 database folder."""
import os
import sys

from data_prep import holdout, sources
from data_prep.augment import parse_augment
from data_prep.convert import FORMATS, convert
from data_prep.errors import DataPrepError
from data_prep.recipe import BLUR_KINDS, Recipe
from data_prep.render import RenderJob

EXAMPLE = r"""
mrfnet convert --source bundled --out data/bundled_lmdb
mrfnet convert --source gopro --root GOPRO_Large --split train --format lmdb --out data/gopro \
               --crops 4 --crop-size 256 --seed 0
mrfnet convert --source pairs --blur my/blurred --sharp my/sharp --format hdf5 --out data/mine
mrfnet convert --source sharp --images DOTA/images --augment all --out data/dota
mrfnet convert --source sharp --images aerial/images --exclude models/mrfnet/heldout_aerial.txt \
               --crops 8 --crop-size 128 --out data/aerial
"""

SOURCES = ("bundled", "gopro", "pairs", "sharp")
# option dest -> the sources it belongs to (given elsewhere -> error)
SOURCE_OPTIONS = {"root": ("gopro",), "split": ("gopro",), "gopro_blur": ("gopro",),
                  "blur": ("pairs",), "sharp": ("pairs",), "images": ("sharp",),
                  "test_fraction": ("pairs", "sharp"), "bundled_split": ("bundled",),
                  "exclude": ("sharp",), "only": ("sharp",)}
SYNTHETIC_OPTIONS = ("size", "blur_kind", "augment", "shake_size")


def add_arguments(parser):
    src = parser.add_argument_group("source")
    src.add_argument("--source", choices=SOURCES, default="bundled",
                     help="where images come from (default: bundled scikit-image photos)")
    src.add_argument("--root", help="gopro: GOPRO_Large folder holding train/ and test/")
    src.add_argument("--split", choices=("train", "test", "both"), help="gopro: which split (default train)")
    src.add_argument("--gopro-blur", choices=sources.GOPRO_BLUR_KINDS,
                     help="gopro: blurred images to use (default blur)")
    src.add_argument("--blur", help="pairs: folder of blurred images")
    src.add_argument("--sharp", help="pairs: folder of sharp images (matched by file name)")
    src.add_argument("--images", help="sharp: folder of sharp photos to blur synthetically")
    src.add_argument("--exclude", metavar="LIST",
                     help="sharp: skip the images named in this list file (one file name per line), "
                          "e.g. a hold-out list (data_prep/holdout.py)")
    src.add_argument("--only", metavar="LIST",
                     help="sharp: use only the images named in this list file")
    src.add_argument("--test-fraction", type=float,
                     help="pairs/sharp: fraction of images (not patches) held out as 'test' (default 0)")
    src.add_argument("--bundled-split", choices=("both", "train", "test"),
                     help="bundled: train photos, held-out photos as 'test', or both (default both)")
    out = parser.add_argument_group("output")
    out.add_argument("--format", choices=FORMATS, default="lmdb", help="database format (default lmdb)")
    out.add_argument("--out", required=True, help="database folder to create")
    out.add_argument("--force", action="store_true", help="replace --out if it exists")
    out.add_argument("--crops", type=int, default=4, help="patches per image (default 4)")
    out.add_argument("--crop-size", type=int, default=256, help="patch side in pixels (default 256)")
    out.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    out.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                     help="rendering processes (default: up to 2)")
    out.add_argument("--skip-bad", action="store_true",
                     help="skip unreadable images, mismatched pairs and images smaller than the crop "
                          "(listed on stderr and in OUT/skipped.csv) instead of stopping")
    out.add_argument("--lmdb-map-mb", type=int, default=64, help="initial LMDB map size; grows as needed")
    out.add_argument("--h5-file-mb", type=float, default=256, help="maximum size of one .h5 file (default 256)")
    out.add_argument("--h5-list-paths", choices=("absolute", "relative"), default="absolute",
                     help="paths in the HDF5 list file: absolute, or relative to the current directory "
                          "(Caffe resolves relative paths against its working directory)")
    out.add_argument("--h5-compression", choices=("none", "gzip"), default="none")
    rec = parser.add_argument_group("synthetic blur (sources sharp and bundled)")
    rec.add_argument("--size", type=int, help="resize photos to SIZE x SIZE first; 0 keeps them (default 256)")
    rec.add_argument("--blur-kind", choices=BLUR_KINDS,
                     help="authors: gaussian then motion (default); shake: Boracchi-Foi camera shake")
    rec.add_argument("--augment", help="none (default), all, or a list of flip,rot90,perm,saturation,noise")
    rec.add_argument("--shake-size", type=int, help="camera-shake kernel side, odd (default 31)")


def _check_option_sources(args):
    for dest, allowed in SOURCE_OPTIONS.items():
        if getattr(args, dest) is not None and args.source not in allowed:
            flag = "--" + dest.replace("_", "-")
            raise DataPrepError(f"{flag} applies to --source {'/'.join(allowed)}, not --source {args.source}")
    if args.source in ("gopro", "pairs"):
        for dest in SYNTHETIC_OPTIONS:
            if getattr(args, dest) is not None:
                raise DataPrepError(f"--{dest.replace('_', '-')} applies to synthetic blur "
                                    f"(--source sharp/bundled), not --source {args.source}")
    required = {"gopro": ["root"], "pairs": ["blur", "sharp"], "sharp": ["images"]}.get(args.source, [])
    missing = ["--" + d for d in required if getattr(args, d) is None]
    if missing:
        raise DataPrepError(f"--source {args.source} needs {' and '.join(missing)}")
    if args.crops < 1:
        raise DataPrepError(f"--crops must be >= 1, got {args.crops}")
    if args.crop_size < 8:
        raise DataPrepError(f"--crop-size must be >= 8, got {args.crop_size}")
    if args.workers < 1:
        raise DataPrepError(f"--workers must be >= 1, got {args.workers}")
    if args.h5_file_mb <= 0 or args.lmdb_map_mb <= 0:
        raise DataPrepError("--h5-file-mb and --lmdb-map-mb must be > 0")


def build(args):
    """(splits {name: [Item]}, RenderJob, source description) from parsed arguments."""
    _check_option_sources(args)
    recipe = Recipe(size=256 if args.size is None else args.size, blur=args.blur_kind or "authors",
                    augment=parse_augment(args.augment),
                    shake_size=31 if args.shake_size is None else args.shake_size)
    if recipe.shake_size < 3 or recipe.shake_size % 2 == 0:
        raise DataPrepError(f"--shake-size must be odd and >= 3, got {recipe.shake_size}")
    if recipe.size and args.crop_size > recipe.size:
        raise DataPrepError(f"--crop-size {args.crop_size} is larger than the rendered image "
                            f"(--size {recipe.size}); use --crop-size <= {recipe.size} or a larger --size")
    desc = {"kind": args.source}
    if args.source == "gopro":
        split = args.split or "train"
        names = ["train", "test"] if split == "both" else [split]
        kind = args.gopro_blur or "blur"
        splits = {s: sources.gopro(args.root, s, kind) for s in names}
        desc.update(root=os.path.abspath(args.root), blur=kind)
    elif args.source == "bundled":
        which = args.bundled_split or "both"
        splits = {"train": sources.bundled_items("train") if which in ("both", "train") else [],
                  "test": sources.bundled_items("heldout") if which in ("both", "test") else []}
    else:
        if args.source == "pairs":
            items = sources.paired_folders(args.blur, args.sharp)
            desc.update(blur=os.path.abspath(args.blur), sharp=os.path.abspath(args.sharp))
        else:
            items = sources.sharp_folder(args.images)
            desc.update(images=os.path.abspath(args.images))
            if args.exclude and args.only:
                raise DataPrepError("give --exclude or --only, not both")
            items = holdout.filter_items(items, only=args.only, exclude=args.exclude)
            for option in ("only", "exclude"):
                if getattr(args, option):
                    desc[option] = os.path.abspath(getattr(args, option))
        train, test = sources.split_items(items, args.test_fraction or 0.0, args.seed)
        splits = {"train": train, "test": test}
    job = RenderJob(crops=args.crops, crop_size=args.crop_size, seed=args.seed, recipe=recipe,
                    skip_bad=args.skip_bad)
    return splits, job, desc


def run(args):
    try:
        splits, job, desc = build(args)
        marker = convert(splits, args.out, fmt=args.format, job=job, workers=args.workers,
                         force=args.force, source=desc,
                         lmdb_map_size=args.lmdb_map_mb << 20, h5_file_mb=args.h5_file_mb,
                         h5_relative_to=os.getcwd() if args.h5_list_paths == "relative" else None,
                         h5_compression=None if args.h5_compression == "none" else "gzip")
    except DataPrepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # disk full, permissions ...: the partial output was removed
        print(f"error: {exc}; nothing was written to {args.out}", file=sys.stderr)
        return 2
    counts = ", ".join(f"{s}: {v['patches']}" for s, v in marker["splits"].items())
    print(f"wrote {args.out} ({args.format}; {counts} patches of {job.crop_size}x{job.crop_size}"
          + (f"; {marker['skipped']} inputs skipped, see skipped.csv" if marker["skipped"] else "") + ")")
    for what, n in marker.get("conversions", {}).items():
        print(f"converted on reading: {what} ({n} files)")
    return 0
