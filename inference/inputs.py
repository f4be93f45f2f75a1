"""Turning command-line INPUTS (files, folders, globs) into image and video paths and output
names.

Folders are read one level deep (their image and video files, sorted), or kept whole as one
frame sequence (`mrfnet deblur --as-video`); globs are expanded by Python (`**` allowed) so
quoting them works the same in every shell. A file is a video by its extension
(VIDEO_EXTENSIONS). Output names keep the input's file stem; two inputs that would write the
same output are reported instead of overwriting.
"""
import glob
from pathlib import Path

from data_prep.imageio import IMAGE_EXTENSIONS

from .errors import InferenceError

OUTPUT_FORMATS = {"png": ".png", "jpeg": ".jpg"}
# what OpenCV's FFmpeg usually reads; the file itself decides (docs/inference.md)
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv",
                    ".flv", ".ts", ".3gp")


def is_image(path):
    return path.suffix.lower() in IMAGE_EXTENSIONS


def is_video(path):
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def _is_media(path):
    return is_image(path) or is_video(path)


def expand_inputs(inputs, folders_whole=False):
    """-> (sorted unique image/video paths, [(argument, problem)]) for files, folders and globs.

    With `folders_whole` a folder of images stays one entry (a frame sequence) instead of
    being expanded into its images.
    """
    found, problems = [], []
    for arg in inputs:
        p = Path(arg)
        if p.is_dir():
            imgs = sorted(q for q in p.iterdir() if q.is_file() and
                          (is_image(q) if folders_whole else _is_media(q)))
            if not imgs:
                problems.append((arg, f"folder has no images ({', '.join(IMAGE_EXTENSIONS)})"))
            found += [p] if folders_whole and imgs else imgs
        elif p.is_file():
            found.append(p)  # named explicitly: tried even with an unusual extension
        elif glob.has_magic(arg):
            imgs = sorted(Path(q) for q in glob.glob(arg, recursive=True)
                          if Path(q).is_file() and _is_media(Path(q)))
            if not imgs:
                problems.append((arg, "pattern matches no image or video files"))
            found += imgs
        else:
            problems.append((arg, "no such file or folder"))
    unique, seen = [], set()
    for p in found:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique, problems


def output_paths(images, out_dir, fmt="png"):
    """{input: output path} with the input's stem and the chosen format's suffix (a key of
    OUTPUT_FORMATS, or a suffix such as ".mp4"), plus clashes.

    Returns (mapping, [(input, problem)]): an input whose output would overwrite another's
    output, or the input itself, is left out and reported.
    """
    suffix = OUTPUT_FORMATS.get(fmt, fmt)
    out_dir = Path(out_dir)
    mapping, problems, taken = {}, [], {}
    for img in images:
        out = out_dir / (img.stem + suffix)
        if out.resolve() == img.resolve():
            problems.append((img, f"output {out} would overwrite the input; choose another --out"))
        elif out in taken:
            problems.append((img, f"output {out} clashes with {taken[out]} (same file name); "
                                  "deblur them into different --out folders"))
        else:
            taken[out] = img
            mapping[img] = out
    return mapping, problems


def find_partner(image, folder):
    """The file in `folder` with the same name as `image`, else the same stem; None if absent."""
    folder = Path(folder)
    exact = folder / image.name
    if exact.is_file():
        return exact
    same_stem = sorted(q for q in folder.glob(glob.escape(image.stem) + ".*") if is_image(q))
    return same_stem[0] if same_stem else None
