"""`mrfnet deblur INPUTS... --out DIR`: deblur images with a trained deploy net.

Inputs are files, folders (their images) or globs, PNG/JPEG/... of any size, 8/16-bit, gray or
RGBA; each is read as 8-bit BGR (conversions are printed), deblurred (padded to the net's stride,
tiled above the memory limit) and written under the same stem as PNG (or JPEG with --jpeg).
A bad image is reported and skipped; the exit code is 0 when all images were written, 1 when some
failed (listed at the end) and 2 when nothing could run (bad options, model or weights).
"""
import sys
import time
from pathlib import Path

from .backends import BACKENDS

# The CPU default: the fastest backend of `make bench` (docs/benchmarks.md).
DEFAULT_CPU_BACKEND = "onnxruntime"
from .models import DEFAULT_VARIANT, VARIANTS


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
                   help="also write side_by_side/<name>.png: blurred | deblurred [| sharp]")
    p.add_argument("--sharp", metavar="DIR",
                   help="folder of sharp images with the same names: third panel and PSNR")
    p.add_argument("--tile-mem", type=float, metavar="MB", default=None,
                   help="memory limit of one forward pass; larger images are tiled "
                        "(default: 4096 MB or half the available memory if less)")
    p.add_argument("--overlap", type=int, metavar="PX", default=None,
                   help="tile overlap in pixels (default 16 x stride, at least 32)")
    p.add_argument("--allow-python-layers", action="store_true",
                   help="accept a prototxt with Python layers (runs code named in the file)")


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


def run(args):
    from data_prep.imageio import read_image_with_notes, write_image
    from layers.metrics import psnr
    from mrfnet.progress import ProgressBar, format_seconds

    from .backends import load
    from .compose import side_by_side
    from .inputs import expand_inputs, find_partner, output_paths
    from .models import resolve_model
    from .tiling import deblur, default_mem_limit_mb

    if args.tile_mem is not None and args.tile_mem <= 0:
        return _fail(f"--tile-mem must be a positive number of MB, got {args.tile_mem}")
    if args.sharp and not Path(args.sharp).is_dir():
        return _fail(f"--sharp {args.sharp}: no such folder")
    if not 0 <= args.jpeg_quality <= 100:
        return _fail(f"--jpeg-quality must be 0..100, got {args.jpeg_quality}")
    images, failures = expand_inputs(args.inputs)
    mapping, clashes = output_paths(images, args.out, "jpeg" if args.jpeg else "png")
    failures += clashes
    if not mapping:
        for what, why in failures:
            print(f"error: {what}: {why}", file=sys.stderr)
        return _fail("no images to deblur")
    backend_name = args.backend or ("caffe" if args.gpu else DEFAULT_CPU_BACKEND)
    try:
        deploy, weights = resolve_model(args.variant, args.deploy, args.weights)
        backend = load(deploy, weights, backend_name, gpu=args.gpu,
                       allow_python_layers=args.allow_python_layers)
    except (ValueError, FileNotFoundError) as exc:
        return _fail(str(exc))
    limit = args.tile_mem or default_mem_limit_mb()
    if getattr(backend, "exported", False):
        print(f"deblur: exported {deploy} + {weights} to ONNX once for onnxruntime: "
              f"{backend.onnx_path or '(in memory: the cache is not writable)'}", file=sys.stderr)
    print(f"deblur: {len(mapping)} image(s) with {deploy} + {weights} on {backend.describe()}, "
          f"stride {backend.stride}, memory limit {limit:.0f} MB per forward; "
          "net input BGR in [0,1]", file=sys.stderr)
    out_dir = Path(args.out)
    sbs_dir = out_dir / "side_by_side"
    bar = ProgressBar(len(mapping), label="deblur", unit="images")
    t_start = time.monotonic()
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
            out, plan = deblur(backend, img, limit, args.overlap)
            write_image(dst, out, args.jpeg_quality)
            if args.side_by_side:
                panels = [img, out] + ([sharp] if sharp is not None else [])
                write_image(sbs_dir / (src.stem + ".png"), side_by_side(panels))
            extra = f", {len(plan.tiles)} tiles" if plan.tiled else ""
            if sharp is not None:
                extra += f", PSNR vs sharp {psnr(img, sharp):.2f} -> {psnr(out, sharp):.2f} dB"
            bar.message(f"{src} -> {dst} ({img.shape[1]}x{img.shape[0]}{extra}, "
                        f"{time.monotonic() - t0:.1f} s)")
        except (ValueError, OSError, MemoryError) as exc:
            msg = str(exc) or type(exc).__name__
            msg = msg[len(str(src)):].lstrip(": ") if msg.startswith(str(src)) else msg
            failures.append((src, msg))
            bar.message(f"failed: {src}: {msg}")
        bar.update(i + 1)
    bar.close()
    done = len(mapping) - sum(1 for f, _ in failures if f in mapping)
    print(f"deblur: {done} of {len(mapping)} image(s) written to {out_dir} in "
          f"{format_seconds(time.monotonic() - t_start)}", file=sys.stderr)
    if failures:
        print(f"deblur: {len(failures)} failure(s):", file=sys.stderr)
        for what, why in failures:
            print(f"  {what}: {why}", file=sys.stderr)
        return 1
    return 0
