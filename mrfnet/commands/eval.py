"""`mrfnet eval`: PSNR/SSIM (and the blurred input's, as baseline) on blurred/sharp pairs,
Table IV timing per backend, and optionally Table III training memory; writes run files.

    mrfnet eval --pairs gopro ROOT --variant mrfnet --out runs/gopro_mrfnet
    mrfnet eval --blur B --sharp S --weights W.caffemodel --backend caffe --backend onnxruntime --out D
    mrfnet eval --pairs gopro ROOT --identity --out D        # scores the blurred input itself
    mrfnet eval --memory --variant mrfnet --out D             # Table III only

Writes DIR/summary.json + DIR/per_image.csv (and DIR/memory.json with --memory); `mrfnet tables`
reads them. Exit 2 with "error: ..." on bad options, pairs, model or weights.
"""
import sys
from pathlib import Path

from inference.backends import BACKENDS
from mrfnet.commands.deblur import add_precision_arguments
from inference.models import DEFAULT_VARIANT, VARIANTS
from layers.metrics import DEFAULT_SSIM_VARIANT, SSIM_VARIANTS

from evaluation.memory import DEFAULT_BATCHES, DEFAULT_CROP, DEFAULT_ITERS

EXAMPLE = """
mrfnet eval --pairs gopro ROOT --variant mrfnet --out runs/gopro_mrfnet
mrfnet eval --blur B --sharp S --weights W.caffemodel --backend caffe --out D
mrfnet eval --memory --variant mrfnet --out D             # Table III only
"""

PAIR_KINDS = ("gopro", "folders")


def add_arguments(p):
    src = p.add_argument_group("pairs (one of)")
    src.add_argument("--pairs", nargs=2, metavar=("KIND", "ROOT"),
                     help="gopro ROOT: GOPRO_Large layout ROOT/<split>/<seq>/{blur,sharp}/; "
                          "folders ROOT: ROOT/blur and ROOT/sharp matched by name")
    src.add_argument("--blur", metavar="DIR", help="blurred images (with --sharp)")
    src.add_argument("--sharp", metavar="DIR", help="sharp images with the same relative names")
    p.add_argument("--split", default="test", help="GOPRO split (default %(default)s)")
    p.add_argument("--gopro-blur", default="blur", choices=("blur", "blur_gamma"),
                   help="GOPRO blurred images: linear 'blur' (default) or 'blur_gamma'")
    p.add_argument("--dataset", metavar="NAME",
                   help="dataset label for tables (default: 'gopro' for --pairs gopro, else the "
                        "pair folder's name); 'gopro' and 'visdrone' fill the paper's columns")
    p.add_argument("--limit", type=int, metavar="N", help="evaluate only the first N pairs")
    m = p.add_argument_group("model")
    m.add_argument("--variant", choices=VARIANTS, default=DEFAULT_VARIANT)
    m.add_argument("--deploy", metavar="PROTOTXT", help="default models/<variant>/deploy.prototxt")
    m.add_argument("--weights", metavar="CAFFEMODEL",
                   help="default models/<variant>/<variant>.caffemodel")
    m.add_argument("--identity", action="store_true",
                   help="no net: score the blurred input as the output (pipeline check)")
    m.add_argument("--backend", action="append", choices=BACKENDS,
                   metavar="{" + ",".join(BACKENDS) + "}",
                   help="backend(s) to run and time; repeat for several (default caffe, the "
                        "reference; onnxruntime runs the net's ONNX export, or --weights X.onnx)")
    m.add_argument("--gpu", action="store_true", help="pycaffe on GPU 0 (CUDA builds only)")
    m.add_argument("--allow-python-layers", action="store_true")
    m.add_argument("--tile-mem", type=float, metavar="MB", help="as in `mrfnet deblur`")
    m.add_argument("--overlap", type=int, metavar="PX", help="as in `mrfnet deblur`")
    add_precision_arguments(m)
    p.add_argument("--ssim", choices=SSIM_VARIANTS, default=DEFAULT_SSIM_VARIANT,
                   help="SSIM definition (default %(default)s = MATLAB ssim on RGB, one 3-D SSIM)")
    p.add_argument("--save-outputs", action="store_true",
                   help="also write the deblurred PNGs under DIR/outputs/<backend>/")
    mem = p.add_argument_group("Table III memory")
    mem.add_argument("--memory", action="store_true",
                     help="measure peak RSS of training --variant (CPU process, not GPU memory)")
    mem.add_argument("--memory-batches", type=int, nargs="+", default=list(DEFAULT_BATCHES),
                     metavar="B")
    mem.add_argument("--memory-crop", type=int, default=DEFAULT_CROP, metavar="PX")
    mem.add_argument("--memory-iters", type=int, default=DEFAULT_ITERS, metavar="N")
    mem.add_argument("--paths", type=int, default=None, metavar="P",
                     help="paths of the train net for --memory (default: the deploy net's, else 4)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the run files")


def _fail(msg):
    print(f"error: {msg}", file=sys.stderr)
    return 2


def _items(args):
    from data_prep import sources

    if args.pairs and (args.blur or args.sharp):
        raise ValueError("give either --pairs KIND ROOT or --blur/--sharp, not both")
    if args.pairs:
        kind, root = args.pairs
        if kind not in PAIR_KINDS:
            raise ValueError(f"--pairs {kind}: unknown kind; choose one of {', '.join(PAIR_KINDS)}")
        if not Path(root).is_dir():
            raise FileNotFoundError(f"--pairs {kind} {root}: no such folder")
        if kind == "gopro":
            items = sources.gopro(root, args.split, args.gopro_blur)
            label = "gopro"
            desc = {"kind": "gopro", "root": str(root), "split": args.split,
                    "blur": args.gopro_blur}
        else:
            items = sources.paired_folders(Path(root) / "blur", Path(root) / "sharp")
            label = Path(root).resolve().name
            desc = {"kind": "folders", "blur": str(Path(root) / "blur"),
                    "sharp": str(Path(root) / "sharp")}
    elif args.blur and args.sharp:
        items = sources.paired_folders(args.blur, args.sharp)
        b = Path(args.blur).resolve()
        label = b.parent.name if b.name.lower() == "blur" else b.name
        desc = {"kind": "folders", "blur": str(args.blur), "sharp": str(args.sharp)}
    else:
        raise ValueError("no pairs: give --pairs gopro ROOT, --pairs folders ROOT or "
                         "--blur DIR --sharp DIR (or only --memory)")
    if args.limit is not None:
        if args.limit < 1:
            raise ValueError(f"--limit must be >= 1, got {args.limit}")
        items = items[:args.limit]
    return items, (args.dataset or label).lower(), desc


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def run(args):
    from inference.backends import load
    from mrfnet.commands.deblur import precision_options
    from inference.models import resolve_model
    from inference.netfile import DeployNet

    from evaluation import runs
    from evaluation.evaluate import IDENTITY, evaluate, summarize
    from evaluation.memory import MEASURE, training_peak_rss

    out = Path(args.out)
    want_pairs = bool(args.pairs or args.blur or args.sharp)
    if not want_pairs and not args.memory:
        return _fail("nothing to do: give pairs (--pairs / --blur --sharp) and/or --memory")
    if args.tile_mem is not None and args.tile_mem <= 0:
        return _fail(f"--tile-mem must be a positive number of MB, got {args.tile_mem}")
    written = []
    try:
        deploy = weights = None
        if not args.identity and (want_pairs or args.paths is None):
            try:
                deploy, weights = resolve_model(args.variant, args.deploy, args.weights)
            except FileNotFoundError:
                if want_pairs:
                    raise
        if want_pairs:
            items, dataset, desc = _items(args)
            backends = [] if args.identity else (args.backend or ["caffe"])
            rows, results, baseline = [], {}, {}
            for name in backends or [IDENTITY]:
                backend = None
                if name != IDENTITY:
                    backend = load(deploy, weights, name, gpu=args.gpu and name == "caffe",
                                   allow_python_layers=args.allow_python_layers,
                                   **precision_options(args, name, backends))
                print(f"eval: {len(items)} pair(s) of {dataset}, "
                      f"{backend.describe() if backend else 'identity (blurred input as output)'}"
                      f", SSIM {args.ssim}", file=sys.stderr)

                def show(i, row, n=len(items)):
                    t = "" if row.forward_s != row.forward_s else f", {row.forward_s:.2f} s"
                    print(f"  [{i + 1}/{n}] {row.name}: PSNR {row.psnr:.3f} dB, SSIM "
                          f"{row.ssim:.4f} (blurred {row.psnr_blur:.3f} / {row.ssim_blur:.4f})"
                          f"{t}", file=sys.stderr)

                got = evaluate(items, backend, args.ssim, args.tile_mem, args.overlap,
                               save_dir=out / "outputs" if args.save_outputs else None,
                               baseline=baseline, on_image=show)
                rows += got
                summary = summarize(got)
                if backend is not None:
                    summary.update(load_s=backend.load_seconds, device=backend.device,
                                   precision=getattr(backend, "precision", "fp32"),
                                   stride=backend.stride, warmup_images=1)
                results[name] = summary
            first = next(iter(results.values()))
            run = {"schema": runs.EVAL_SCHEMA, "kind": "eval",
                   "variant": IDENTITY if args.identity else args.variant,
                   "paths": DeployNet(deploy).num_paths if deploy else None,
                   "identity": bool(args.identity), "dataset": dataset, "pairs": desc,
                   "n_images": len(items), "ssim_variant": args.ssim,
                   "baseline": {"psnr": first["psnr_blur"], "ssim": first["ssim_blur"]},
                   "results": results,
                   "timing": "forward_mean_s: mean wall time of pad+tile+forward+quantise per "
                             "image after one warm-up image; load_s: building the net and "
                             "reading the weights (Table IV reports their sum)",
                   "deploy": str(deploy) if deploy else None,
                   "weights": str(weights) if weights else None,
                   "weights_sha256": runs.sha256(weights) if weights else None,
                   "tile_mem_mb": args.tile_mem, "per_image_csv": "per_image.csv",
                   **runs.provenance()}
            written.append(runs.write_rows_csv(out / "per_image.csv", rows))
            written.append(runs.write_json(out / "summary.json", run))
            print(f"\n{'backend':10s} {'PSNR':>8s} {'SSIM':>8s} {'blurPSNR':>9s} {'blurSSIM':>9s}"
                  f" {'load s':>7s} {'fwd s':>7s}")
            for name, s in results.items():
                print(f"{name:10s} {s['psnr']:8.3f} {s['ssim']:8.4f} {s['psnr_blur']:9.3f} "
                      f"{s['ssim_blur']:9.4f} {_fmt(s.get('load_s'), '7.3f')} "
                      f"{_fmt(s['forward_mean_s'], '7.3f')}")
        if args.memory:
            paths = args.paths or (DeployNet(deploy).num_paths if deploy else None) or 4
            results = []
            for b in args.memory_batches:
                print(f"memory: {args.variant} P={paths} batch {b} crop {args.memory_crop} ...",
                      file=sys.stderr)
                r = training_peak_rss(args.variant, b, args.memory_crop, paths, args.memory_iters)
                msg = r.get("error") or (f"peak RSS {r['peak_rss_mb']:.0f} MB "
                                         f"(net + batch {r['net_batch_mb']:.0f} MB)")
                print(f"  {msg}", file=sys.stderr)
                results.append(r)
            written.append(runs.write_json(out / "memory.json", {
                "schema": runs.MEMORY_SCHEMA, "kind": "memory", "variant": args.variant,
                "paths": paths, "crop": args.memory_crop, "device": "cpu", "measure": MEASURE,
                "results": results, **runs.provenance()}))
    except (ValueError, FileNotFoundError) as exc:
        return _fail(str(exc))
    for w in written:
        print(f"wrote {w}", file=sys.stderr)
    return 0
