"""Whole photos blurred with the authors' recipe into blur/ and sharp/ PNG pairs.

Evaluation sets (what `mrfnet eval --blur DIR/blur --sharp DIR/sharp` and `mrfnet train --val DIR`
read): each photo is resized to 256x256 (the recipe's size) and blurred once, seeded by
(seed, split id, photo index), so the same command gives the same pairs on any machine.
OUT/params.json lists every photo's kernel parameters.
"""
import json
import shutil
from pathlib import Path

from . import bundled, sources
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
