"""`mrfnet demo` (what `make demo` runs): the main job end to end on photos scikit-image ships.

1. data: the bundled *train* photos through the authors' synthetic-blur recipe into an LMDB of
   small crops (data_prep.convert); the bundled *held-out* photos, never trained on, rendered
   once at 256x256 as blurred/sharp PNG pairs for evaluation; two train photos re-blurred with
   other kernels as the validation set that picks the best snapshot;
2. a CPU training run of MRFNet (solver.trainer, the same code as `mrfnet train`) bounded by a
   wall-time budget, with the iteration count planned from a measured step time so that the
   learning-rate step and the loss-weight groups fall inside the budget;
3. evaluation on the held-out pairs (evaluation.evaluate, pycaffe): deblurred PNGs,
   side-by-side PNGs (blurred | this run's model | the shipped model | sharp, each panel
   captioned with its PSNR), the loss curve,
   and summary.md with the PSNR/SSIM of the blurred input, this run's output and the shipped
   model's output (models/mrfnet, trained for hours: MODEL.md), so a new user sees what longer
   training buys.

Smaller crops and batch than the paper (default 64x64, batch 8, instead of 256x256, batch 16):
one paper-sized iteration takes over ten seconds on 2 cores, so the paper's setting would
give only a few dozen steps in the budget. The net itself is the paper's (4 paths, MRFNet).
"""
import json
import math
import sys
import time
from pathlib import Path

EXAMPLE = """
mrfnet demo                              # what `make demo` runs: 12 minutes of training
mrfnet demo --minutes 3 --out results/demo-short
"""
DEFAULTS = dict(variant="mrfnet", paths=4, minutes=12.0, crop=64, batch=8, crops_per_photo=64,
                base_lr=5e-4, seed=0)
VAL_PHOTOS = ("astronaut", "chelsea")   # train photos, re-blurred with other kernels


def add_arguments(p):
    p.add_argument("--out", metavar="DIR", help="results folder (default results/demo-<time>)")
    p.add_argument("--minutes", type=float, default=DEFAULTS["minutes"],
                   help="training wall-time budget in minutes (default %(default)s)")
    p.add_argument("--variant", default=DEFAULTS["variant"],
                   choices=["refinenet", "lwrefinenet", "rcrefinenet", "mrfnet"])
    p.add_argument("--paths", type=int, default=DEFAULTS["paths"], help="refinement paths 1..6")
    p.add_argument("--crop", type=int, default=DEFAULTS["crop"], help="training crop size")
    p.add_argument("--batch", type=int, default=DEFAULTS["batch"], help="training batch")
    p.add_argument("--crops-per-photo", type=int, default=DEFAULTS["crops_per_photo"])
    p.add_argument("--base-lr", type=float, default=DEFAULTS["base_lr"])
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"])


def _say(msg):
    print(f"[demo] {msg}", file=sys.stderr, flush=True)


def render_pairs(names, folder, seed, split_id):
    """Blurred/sharp PNG pairs of bundled photos at 256x256 under folder/{blur,sharp}/<name>.png,
    with their kernel parameters in folder/params.json (data_prep.pairs). Returns data_prep Items."""
    from data_prep.pairs import render_pairs as render
    from data_prep.sources import Item

    return render([Item(name=n, sharp=n, kind="bundled") for n in names], folder, seed, split_id)


def _shipped_model(args, heldout, save_dir):
    """(rows, summary, backend name) of the shipped model of this variant and path count on
    the held-out pairs, or None when there is none (other variants/paths ship no weights)."""
    from evaluation.evaluate import evaluate, summarize
    from inference.backends import load
    from inference.errors import InferenceError
    from inference.models import resolve_model

    try:
        deploy, weights = resolve_model(args.variant)
        backend = load(str(deploy), str(weights), "caffe")
    except (InferenceError, FileNotFoundError) as exc:
        _say(f"no shipped model to compare with ({exc})")
        return None
    rows = evaluate(heldout, backend, save_dir=save_dir)
    return rows, summarize(rows), backend.name


def plan_iterations(args, budget_s):
    """Iterations that fit the budget, from a measured step time of this very configuration."""
    from solver.measure import time_training

    from solver.parallel import default_workers
    m = time_training(args.variant, args.batch, args.crop, iters=3, paths=args.paths,
                      workers=default_workers(args.batch))   # as `train` will run it
    per_iter = m["seconds_per_iter"]
    iters = max(20, int(budget_s / (per_iter * 1.15)))   # 15% for validation and snapshots
    return iters, per_iter


def write_summary(out, rows, summary, train_summary, args, iters, per_iter, shipped=None):
    lines = [
        "# mrfnet demo results", "",
        f"Variant {args.variant}, {args.paths} paths, trained on CPU for {train_summary.get('iterations')} "
        f"iterations (planned {iters}, {per_iter:.2f} s/iteration measured before training), "
        f"batch {args.batch} of {args.crop}x{args.crop} crops, base lr {args.base_lr}.",
        "Held-out photos (never trained on), blurred with the authors' recipe at 256x256.",
        "PSNR on uint8 RGB; SSIM = MATLAB-style 3-D SSIM (layers.metrics, variant matlab3d).", "",
    ]
    ship_rows, ship = shipped if shipped else (None, None)
    head = "| image | PSNR blurred | PSNR this run | gain (dB) | SSIM blurred | SSIM this run |"
    rule = "|---|---|---|---|---|---|"
    if ship_rows:
        head += " PSNR shipped | gain shipped (dB) | SSIM shipped |"
        rule += "---|---|---|"
        lines.insert(-1, "Shipped model: `models/mrfnet/mrfnet.caffemodel` (trained for hours on "
                         "aerial photos, `models/mrfnet/MODEL.md`), on the same pairs.")
    lines += [head, rule]
    table = [(r.name, r.psnr_blur, r.psnr, r.ssim_blur, r.ssim) for r in rows]
    table.append(("**mean**", summary["psnr_blur"], summary["psnr"], summary["ssim_blur"],
                  summary["ssim"]))
    extra = ([(x.psnr, x.ssim) for x in ship_rows] + [(ship["psnr"], ship["ssim"])]
             if ship_rows else [None] * len(table))
    for (name, pb, p, sb, sv), e in zip(table, extra):
        line = f"| {name} | {pb:.2f} | {p:.2f} | {p - pb:+.2f} | {sb:.4f} | {sv:.4f} |"
        if e:
            line += f" {e[0]:.2f} | {e[0] - pb:+.2f} | {e[1]:.4f} |"
        lines.append(line)
    panels = ("blurred | this run | shipped model | sharp" if ship_rows
              else "blurred | deblurred | sharp") + ", each captioned with its PSNR"
    lines += ["", f"Files: `deblurred/` outputs, `side_by_side/` ({panels}), "
              "`train/loss.png` loss curves, `train/train_log.jsonl`, `heldout/` the pairs and "
              "their kernel parameters, `summary.json`."]
    (out / "summary.md").write_text("\n".join(lines) + "\n")


def run(args):
    from data_prep import bundled
    from data_prep.convert import convert
    from data_prep.imageio import read_image, write_image
    from data_prep.render import RenderJob
    from data_prep.sources import bundled_items
    from inference.backends import load
    from inference.compose import caption, side_by_side
    from evaluation.evaluate import evaluate, read_pair, summarize
    from prototxt_gen.topology import total_stride
    from solver.trainer import train

    if args.minutes <= 0:
        print("error: --minutes must be positive", file=sys.stderr)
        return 2
    stride = total_stride(args.paths)
    if args.crop % stride:
        print(f"error: --crop {args.crop} must be a multiple of the net's stride {stride}",
              file=sys.stderr)
        return 2
    out = Path(args.out or f"results/demo-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    if out.exists() and any(out.iterdir()):
        print(f"error: {out} exists and is not empty; choose another --out", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()

    _say(f"1/4 data: bundled train photos {', '.join(bundled.names('train'))} -> LMDB of "
         f"{args.crops_per_photo} crops each")
    convert({"train": bundled_items("train")}, out / "data", fmt="lmdb",
            job=RenderJob(crops=args.crops_per_photo, crop_size=args.crop, seed=args.seed),
            source={"kind": "bundled"})
    heldout = render_pairs(bundled.names("heldout"), out / "heldout", args.seed, split_id=1)
    render_pairs(VAL_PHOTOS, out / "val", args.seed + 1000, split_id=2)
    _say(f"held-out pairs (not trained on): {', '.join(i.name for i in heldout)}")

    budget = args.minutes * 60
    _say("2/4 measuring one training step to plan the run")
    iters, per_iter = plan_iterations(args, budget)
    _say(f"{per_iter:.2f} s/iteration -> {iters} iterations in {args.minutes:g} min")
    summary_train = train({
        "variant": args.variant, "paths": args.paths, "train_db": str(out / "data" / "train_lmdb"),
        "val": str(out / "val"), "out": str(out / "train"), "iters": iters, "batch": args.batch,
        "crop": args.crop, "base_lr": args.base_lr, "stepsize": max(1, iters // 2),
        "val_every": max(10, iters // 8), "snapshot_every": max(10, iters // 4),
        "seed": args.seed, "max_seconds": budget, "dataset": "visdrone",
    }, argv=["mrfnet", "demo"] + sys.argv[2:])
    weights = summary_train.get("best_model") or summary_train.get("final_model")
    _say(f"training {summary_train.get('status')}: {summary_train.get('iterations')} iterations; "
         f"model {weights}")

    _say("3/4 deblurring the held-out photos (pycaffe)")
    backend = load(summary_train["deploy"], str(weights), "caffe")
    rows = evaluate(heldout, backend, save_dir=out / "eval")
    shipped = _shipped_model(args, heldout, out / "eval_shipped")
    run_name = f"this run ({summary_train.get('iterations')} it.)"
    for i, item in enumerate(heldout):
        blur, sharp = read_pair(item)
        stem = item.name.rsplit(".", 1)[0]
        deblurred = read_image(out / "eval" / backend.name / f"{stem}.png")
        write_image(out / "deblurred" / f"{stem}.png", deblurred)
        panels = [blur, deblurred]
        captions = [caption("blurred", rows[i].psnr_blur), caption(run_name, rows[i].psnr)]
        if shipped:
            panels.append(read_image(out / "eval_shipped" / shipped[2] / f"{stem}.png"))
            captions.append(caption(f"shipped {args.variant}", shipped[0][i].psnr))
        write_image(out / "side_by_side" / f"{stem}.png",
                    side_by_side(panels + [sharp], captions + ["sharp"]))
    summary = summarize(rows)
    summary.update(train=summary_train, planned_iters=iters, seconds_per_iter=per_iter,
                   minutes=args.minutes, wall_s=time.monotonic() - t0)
    if shipped:
        summary["shipped"] = shipped[1]
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    write_summary(out, rows, summary, summary_train, args, iters, per_iter,
                  shipped=shipped[:2] if shipped else None)
    if shipped:
        s = shipped[1]
        _say(f"shipped model on the same photos: {s['psnr_blur']:.2f} -> {s['psnr']:.2f} dB "
             f"({s['psnr'] - s['psnr_blur']:+.2f}), SSIM {s['ssim_blur']:.4f} -> {s['ssim']:.4f}")

    gain = summary["psnr"] - summary["psnr_blur"]
    _say(f"4/4 held-out mean PSNR {summary['psnr_blur']:.2f} dB (blurred) -> {summary['psnr']:.2f} dB "
         f"(deblurred), {gain:+.2f} dB; SSIM {summary['ssim_blur']:.4f} -> {summary['ssim']:.4f}")
    print(f"results: {out}  (summary.md, side_by_side/, train/loss.png)")
    if not math.isfinite(gain) or gain <= 0:
        _say("the output is not better than the input: this is a bug or too short a run")
        return 1
    return 0
