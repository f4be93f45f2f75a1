"""The evaluation tables of a model card (models/<variant>/MODEL.md), from one command:

  mrfnet model-report --weights models/mrfnet/mrfnet.caffemodel \
      --aerial ../shared/data/aerial_train/images --gopro ../shared/data/gopro_mini --out results/model_report

1. the test aerial tiles (models/mrfnet/test_aerial.txt: held out from training and never used
   for a choice; the validation tiles of val_aerial.txt are not among them), blurred once with
   the authors' recipe (`mrfnet pairs`, seed 0): per class, per motion length, the worst tiles,
   and a picture of the worst one (OUT/worst_tile.png: blurred | deblurred | sharp);
2. the bundled held-out photos, blurred as `mrfnet demo` blurs them (seed 0);
3. GOPRO_Large test pairs (real camera blur), whole frames.
PSNR on uint8 RGB, MATLAB-style 3-D SSIM (layers.metrics), blurred input vs deblurred, pycaffe.
Writes OUT/report.md (the tables) and OUT/report.json (every image's row).
"""
import json
import sys
from pathlib import Path

import numpy as np

MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "mrfnet"
HELDOUT_LIST = MODEL_DIR / "heldout_aerial.txt"    # never trained on: validation + test tiles
VAL_LIST = MODEL_DIR / "val_aerial.txt"            # every choice (snapshots, lr, recipe)
TEST_LIST = MODEL_DIR / "test_aerial.txt"          # reported only
WORST_SHOWN = 5


def _table(groups, title):
    """Markdown table, one line per {label: [ImageRow]} entry, plus their mean when several."""
    lines = [f"**{title}**", "",
             "| | images | PSNR blurred | PSNR deblurred | gain (dB) | worst gain (dB) | SSIM blurred | SSIM deblurred |",
             "|---|---|---|---|---|---|---|---|"]
    everything = []
    for label, rows in groups.items():
        everything += rows
        lines.append(_row(label, rows))
    if len(groups) > 1:
        lines.append(_row("**mean**", everything))
    return "\n".join(lines) + "\n"


def _row(label, rows):
    pb, p = np.mean([r.psnr_blur for r in rows]), np.mean([r.psnr for r in rows])
    worst = min(r.psnr - r.psnr_blur for r in rows)
    sb, s = np.mean([r.ssim_blur for r in rows]), np.mean([r.ssim for r in rows])
    return (f"| {label} | {len(rows)} | {pb:.2f} | {p:.2f} | {p - pb:+.2f} | {worst:+.2f} | "
            f"{sb:.4f} | {s:.4f} |")


def _worst(rows, pairs_dir, deblurred_dir, out):
    """Lines naming the WORST_SHOWN tiles that gained least, and the picture of the worst."""
    from data_prep.imageio import read_image, write_image
    from inference.compose import side_by_side
    rows = sorted(rows, key=lambda r: r.psnr - r.psnr_blur)[:WORST_SHOWN]
    lines = [f"**The {len(rows)} test tiles that gained least**", ""]
    lines += [f"- {r.name}: {r.psnr_blur:.2f} -> {r.psnr:.2f} dB ({r.psnr - r.psnr_blur:+.2f}), "
              f"SSIM {r.ssim_blur:.4f} -> {r.ssim:.4f}" for r in rows]
    stem = rows[0].name.rsplit(".", 1)[0]
    panels = [read_image(Path(pairs_dir) / "blur" / f"{stem}.png"),
              read_image(Path(deblurred_dir) / f"{stem}.png"),
              read_image(Path(pairs_dir) / "sharp" / f"{stem}.png")]
    write_image(Path(out) / "worst_tile.png", side_by_side(panels))
    lines += ["", f"`worst_tile.png`: {rows[0].name}, blurred | deblurred | sharp"]
    return "\n".join(lines) + "\n"


def _by_motion(rows, pairs_dir):
    """{"motion N px": rows} from the pairs' params.json (the recipe's motion length)."""
    params = json.loads((Path(pairs_dir) / "params.json").read_text())["pairs"]
    groups = {}
    for r in sorted(rows, key=lambda r: params[r.name]["motion_len"]):
        groups.setdefault(f"motion {params[r.name]['motion_len']} px", []).append(r)
    return groups


def report(weights, deploy, out, aerial=None, gopro=None, aerial_list=TEST_LIST, seed=0,
           backend="caffe"):
    from data_prep import holdout, sources
    from data_prep.pairs import render_pairs
    from evaluation.evaluate import evaluate
    from inference.backends import load

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    net = load(str(deploy), str(weights), backend)
    sections, rows_json = [], {}
    if aerial:
        items = holdout.select(sources.sharp_folder(aerial),
                               holdout.read_list(aerial_list, "--aerial-list"), keep=True,
                               option="--aerial-list")
        pairs = render_pairs(items, out / "pairs_aerial", seed)
        rows = evaluate(pairs, net, save_dir=out / "deblurred")
        by_class = {}
        for r in rows:
            by_class.setdefault(holdout.class_of(r.name).replace("rsscn7_", ""), []).append(r)
        which = f"{Path(aerial_list).name}: {len(rows)} tiles, never trained on"
        sections.append(_table(by_class, f"Aerial tiles ({which}), authors' recipe at 256x256, "
                                         f"seed {seed}, by class"))
        sections.append(_table(_by_motion(rows, out / "pairs_aerial"),
                               "The same tiles by motion blur length"))
        sections.append(_worst(rows, out / "pairs_aerial", out / "deblurred" / net.name, out))
        rows_json["aerial"] = [r.as_dict() for r in rows]
    pairs = render_pairs(sources.bundled_items("heldout"), out / "pairs_bundled", seed)
    rows = evaluate(pairs, net)
    sections.append(_table({r.name.rsplit(".", 1)[0]: [r] for r in rows},
                           f"Bundled held-out photos (scikit-image), as `mrfnet demo` renders them (seed {seed})"))
    rows_json["bundled"] = [r.as_dict() for r in rows]
    if gopro:
        rows = evaluate(sources.gopro(gopro, "test"), net)
        sections.append(_table({r.name: [r] for r in rows},
                               "GOPRO_Large test frames (real camera blur, 1280x720)"))
        rows_json["gopro"] = [r.as_dict() for r in rows]
    text = "\n".join(sections)
    (out / "report.md").write_text(text)
    (out / "report.json").write_text(json.dumps({"weights": str(weights), "rows": rows_json}, indent=1))
    return text, rows_json


if __name__ == "__main__":  # kept for old scripts: use `mrfnet model-report`
    from mrfnet.cli import main
    sys.exit(main(["model-report", *sys.argv[1:]]))
