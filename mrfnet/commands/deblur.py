"""`mrfnet deblur INPUTS... --out DIR`: deblur images and videos with a trained deploy net.

Inputs are files, folders (their images and videos) or globs. Images (PNG/JPEG/... of any size,
8/16-bit, gray or RGBA) are read as 8-bit BGR (conversions are printed), deblurred (padded to
the net's stride, tiled above the memory limit, optionally the x8 self-ensemble) and written
under the same stem as PNG (or JPEG with --jpeg). Videos, and folders of frames with
--as-video, go through inference.video: streamed frame by frame into DIR/<stem>.mp4 (no audio).
A bad input is reported and skipped; the exit code is 0 when all inputs were written, 1 when
some failed (listed at the end), 2 when nothing could run (bad options, model or weights) and
130 when interrupted (Ctrl-C, SIGTERM).
"""
import sys
import time
from pathlib import Path

from inference.backends import BACKENDS, DEFAULT_CPU_BACKEND, PRECISIONS
from inference.models import DEFAULT_VARIANT, VARIANTS

EXAMPLE = """
mrfnet deblur photo.jpg more_photos/ --out deblurred/ --side-by-side   # ONNX Runtime on CPU
mrfnet deblur 'shots/*.png' --out out/ --backend caffe --ensemble
mrfnet deblur flight.mp4 --out out/ --start 0:30 --end 0:40 --every 2 --still 900
"""


def add_arguments(p):
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image files, folders of images, or glob patterns (quote them)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    add_model_arguments(p, "; with --backend onnxruntime also an .onnx file from "
                           "`mrfnet export`")
    p.add_argument("--backend", choices=BACKENDS, default=None,
                   help="onnxruntime = ONNX Runtime on the net's ONNX export, made once per "
                        "caffemodel into the cache (default on CPU: the fastest in make bench, 1.2x "
                        "OpenCV dnn at 256x256 and 1.9x at 1280x720, 1.9-2.1x pycaffe, "
                        "docs/benchmarks.md); opencv = cv2.dnn on the same "
                        "files (no Caffe needed); caffe = pycaffe, the reference (default with "
                        "--gpu)")
    p.add_argument("--gpu", action="store_true", help="pycaffe on GPU 0 (needs a CUDA build)")
    p.add_argument("--jpeg", action="store_true",
                   help="write JPEG instead of PNG (as the authors did; lowers PSNR)")
    p.add_argument("--jpeg-quality", type=int, default=95, metavar="Q")
    p.add_argument("--side-by-side", action="store_true",
                   help="also write side_by_side/<name>.png: blurred | deblurred [| sharp], "
                        "each panel captioned (PSNR with --sharp); for a video a second video "
                        "side_by_side/<stem>.mp4")
    p.add_argument("--sharp", metavar="DIR",
                   help="folder of sharp images with the same names: third panel and PSNR")
    p.add_argument("--tile-mem", type=float, metavar="MB", default=None,
                   help="memory limit of one forward pass; larger images are tiled "
                        "(default: 4096 MB or half the available memory if less)")
    p.add_argument("--overlap", type=int, metavar="PX", default=None,
                   help="tile overlap in pixels (default 16 x stride, at least 32)")
    p.add_argument("--allow-python-layers", action="store_true",
                   help="accept a prototxt with Python layers (runs code named in the file)")
    p.add_argument("--ensemble", action="store_true",
                   help="x8 self-ensemble for images and video frames: the average of the "
                        "outputs under the 8 flips/90-degree rotations, each turned back "
                        "(8 forwards per image: about 8x the time, for +0.11 dB mean PSNR "
                        "on the 112 test aerial tiles with the shipped model, worst tile "
                        "-1.80 -> -1.32 dB; docs/inference.md)")
    add_precision_arguments(p)
    from mrfnet.commands.deblur_video import add_video_arguments

    add_video_arguments(p)


def add_precision_arguments(p):
    """--precision and --calib (the onnxruntime backend's int8 model, inference.quantize)."""
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="onnxruntime backend: int8 = the int8 model (quantized once per "
                        "caffemodel into the cache, calibrated on blurred training photos; "
                        "about 2x faster with VNNI; on the validation tiles -0.011 dB mean PSNR, "
                        "at most 0.094 dB on one tile), fp32 = the float export; auto (default) "
                        "= int8 for the shipped weights on a CPU with VNNI, else fp32; an .onnx "
                        "file as it is (docs/performance.md 'int8'); pycaffe and OpenCV dnn are "
                        "fp32")
    p.add_argument("--calib", metavar="DIR",
                   help="with int8: calibrate on the blurred training images in DIR instead "
                        "of the bundled training photos")


def _note_int8_without_vnni(backend):
    """int8 asked for on a CPU without VNNI: its 8-bit dot products can saturate there, and
    the quality rule was measured with VNNI only (docs/performance.md, "int8")."""
    from inference.quantize import has_vnni

    if getattr(backend, "precision", "fp32") == "int8" and not has_vnni():
        print("deblur: note: this CPU has no VNNI; int8 runs, but its 8-bit products may "
              "saturate and its quality was measured on VNNI CPUs only (--precision fp32 is "
              "the default here)", file=sys.stderr)


def precision_options(args, backend_name, others=()):
    """load() options for --precision/--calib. On pycaffe and OpenCV dnn "auto" means fp32,
    and so does int8 when `others` (the other backends of one command) include onnxruntime,
    which the option is then for; alone with them int8 is refused by load()."""
    if backend_name == "onnxruntime":
        return {"precision": args.precision, "calib": args.calib}
    if args.precision == "auto" or "onnxruntime" in others:
        return {}
    return {"precision": args.precision, "calib": args.calib}


def add_model_arguments(p, weights_note=""):
    """--variant, --deploy, --weights (for inference.models.resolve_model)."""
    p.add_argument("--variant", choices=VARIANTS, default=DEFAULT_VARIANT,
                   help="model under models/<variant>/ (default %(default)s)")
    p.add_argument("--deploy", metavar="PROTOTXT", help="deploy net (default: the variant's)")
    p.add_argument("--weights", metavar="CAFFEMODEL",
                   help="trained weights (default: models/<variant>/<variant>.caffemodel)"
                        + weights_note)


def _fail(msg):
    print(f"error: {msg}", file=sys.stderr)
    return 2


def _check_options(args):
    """One problem with the options, or None."""
    if args.tile_mem is not None and args.tile_mem <= 0:
        return f"--tile-mem must be a positive number of MB, got {args.tile_mem}"
    if args.sharp and not Path(args.sharp).is_dir():
        return f"--sharp {args.sharp}: no such folder"
    if not 0 <= args.jpeg_quality <= 100:
        return f"--jpeg-quality must be 0..100, got {args.jpeg_quality}"
    from mrfnet.commands.deblur_video import check_video_options

    return check_video_options(args)


def model_label(weights, ensemble=False):
    """The caption of a deblurred panel: the weights' name (the run that made them)."""
    w = Path(weights)
    name = w.stem if w.stem not in ("best", "final") else f"{w.parent.name}/{w.stem}"
    return name + (" x8" if ensemble else "")


def run(args):
    from mrfnet.progress import format_seconds

    from inference.backends import load
    from inference.inputs import expand_inputs, is_video, output_paths
    from inference.models import resolve_model
    from inference.tiling import default_mem_limit_mb
    from inference.video import CONTAINERS, Interrupted
    from mrfnet.commands.deblur_video import deblur_videos

    problem = _check_options(args)
    if problem:
        return _fail(problem)
    found, failures = expand_inputs(args.inputs, folders_whole=args.as_video is not None)
    videos = [p for p in found if p.is_dir() or is_video(p)]
    images = [p for p in found if p not in videos]  # a file named explicitly is tried as one
    mapping, clashes = output_paths(images, args.out, "jpeg" if args.jpeg else "png")
    video_map, video_clashes = output_paths(videos, args.out, CONTAINERS[args.container][1])
    failures += clashes + video_clashes
    if not mapping and not video_map:
        for what, why in failures:
            print(f"error: {what}: {why}", file=sys.stderr)
        return _fail("no images or videos to deblur")
    backend_name = args.backend or ("caffe" if args.gpu else DEFAULT_CPU_BACKEND)
    try:
        deploy, weights = resolve_model(args.variant, args.deploy, args.weights)
        backend = load(deploy, weights, backend_name, gpu=args.gpu,
                       allow_python_layers=args.allow_python_layers,
                       **precision_options(args, backend_name))
    except (ValueError, FileNotFoundError) as exc:
        return _fail(str(exc))
    limit = args.tile_mem or default_mem_limit_mb()
    _note_int8_without_vnni(backend)
    if getattr(backend, "exported", False):
        print(f"deblur: exported {deploy} + {weights} to ONNX once for onnxruntime: "
              f"{backend.onnx_path or '(in memory: the cache is not writable)'}", file=sys.stderr)
    what = " and ".join(f"{n} {kind}(s)" for n, kind in ((len(mapping), "image"),
                                                         (len(video_map), "video")) if n)
    print(f"deblur: {what} with {deploy} + {weights} on {backend.describe()}, "
          f"stride {backend.stride}, memory limit {limit:.0f} MB per forward"
          f"{', x8 self-ensemble' if args.ensemble else ''}; net input BGR in [0,1]",
          file=sys.stderr)

    def deblur_one(img):
        from inference.tiling import deblur
        return deblur(backend, img, limit, args.overlap, args.ensemble)

    label = model_label(weights, args.ensemble)
    t_start = time.monotonic()
    done = _deblur_images(mapping, args, deblur_one, label, failures)
    try:
        videos_done = deblur_videos(video_map, args, deblur_one, label, failures)
    except Interrupted as exc:
        print(f"deblur: interrupted ({exc.signal_name}) after {exc.done} frame(s) of "
              f"{exc.source}; its partial video was removed", file=sys.stderr)
        return 130
    written = [f"{done} of {len(mapping)} image(s)"] * bool(mapping) + \
        [f"{videos_done} of {len(video_map)} video(s)"] * bool(video_map)
    print(f"deblur: {' and '.join(written)} written to {args.out} in "
          f"{format_seconds(time.monotonic() - t_start)}", file=sys.stderr)
    if failures:
        print(f"deblur: {len(failures)} failure(s):", file=sys.stderr)
        for what, why in failures:
            print(f"  {what}: {why}", file=sys.stderr)
        return 1
    return 0


def record_failure(src, exc, failures, bar):
    """Record a failed input (the message without a repeated file name) and say so."""
    msg = str(exc) or type(exc).__name__
    msg = msg[len(str(src)):].lstrip(": ") if msg.startswith(str(src)) else msg
    failures.append((src, msg))
    bar.message(f"failed: {src}: {msg}")


def _deblur_images(mapping, args, deblur_one, label, failures):
    """Deblur still images {input: output}; returns how many were written."""
    if not mapping:
        return 0
    from data_prep.imageio import read_image_with_notes, write_image
    from layers.metrics import psnr
    from mrfnet.progress import ProgressBar

    from inference.compose import caption, side_by_side
    from inference.inputs import find_partner

    sbs_dir = Path(args.out) / "side_by_side"
    bar = ProgressBar(len(mapping), label="deblur", unit="images")
    done = 0
    for i, (src, dst) in enumerate(mapping.items()):
        t0 = time.monotonic()
        try:
            img, notes = read_image_with_notes(src)
            if notes:
                bar.message(f"note: {src}: converted: {'; '.join(notes)}")
            sharp = None
            if args.sharp:
                partner = find_partner(src, args.sharp)
                if partner is None:
                    raise FileNotFoundError(f"no sharp image named like {src.name} in {args.sharp}")
                sharp = read_image_with_notes(partner)[0]
                if sharp.shape != img.shape:
                    raise ValueError(f"sharp image {partner} is {sharp.shape[1]}x{sharp.shape[0]}, "
                                     f"the blurred one {img.shape[1]}x{img.shape[0]}")
            out, plan = deblur_one(img)
            write_image(dst, out, args.jpeg_quality)
            scores = [psnr(img, sharp), psnr(out, sharp)] if sharp is not None else [None, None]
            if args.side_by_side:
                panels = [img, out] + ([sharp] if sharp is not None else [])
                captions = [caption("blurred", scores[0]), caption(label, scores[1]), "sharp"]
                write_image(sbs_dir / (src.stem + ".png"),
                            side_by_side(panels, captions[:len(panels)]))
            extra = f", {len(plan.tiles)} tiles" if plan.tiled else ""
            if sharp is not None:
                extra += f", PSNR vs sharp {scores[0]:.2f} -> {scores[1]:.2f} dB"
            bar.message(f"{src} -> {dst} ({img.shape[1]}x{img.shape[0]}{extra}, "
                        f"{time.monotonic() - t0:.1f} s)")
            done += 1
        except (ValueError, OSError, MemoryError) as exc:
            record_failure(src, exc, failures, bar)
        bar.update(i + 1)
    bar.close()
    return done
