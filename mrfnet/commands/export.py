"""`mrfnet export --onnx OUT.onnx`: a deploy net with its caffemodel as one ONNX model.

    mrfnet export --onnx mrfnet.onnx                                 # the shipped MRFNet
    mrfnet export --variant lwrefinenet --weights lw.caffemodel --onnx lw.onnx
    mrfnet export --deploy net.prototxt --weights net.caffemodel --onnx net.onnx
    mrfnet export                     # into the cache that `--backend onnxruntime` runs from
    mrfnet export --int8 --onnx mrfnet-int8.onnx          # int8, calibrated on bundled photos
    mrfnet export --int8 --calib calib/blur --onnx m8.onnx  # ... on your own blurred photos

The file runs in ONNX Runtime (`mrfnet deblur --backend onnxruntime --weights OUT.onnx`, or
any program with `onnxruntime.InferenceSession`) and in other ONNX readers; its input "data"
is float32 N x 3 x H x W, BGR in [0, 1], H and W any multiples of the net's stride
(`--fixed-size WxH` fixes them for readers that need it, such as OpenCV dnn's ONNX importer).
After writing, ONNX Runtime and pycaffe run the same random input and the largest difference
is printed (--no-compare skips that). `--int8` writes the int8 model instead (inference.quantize:
ONNX Runtime's static quantization, calibrated on blurred training photos; about 2x faster on a
CPU with VNNI), and the check compares it with pycaffe on a blurred training photo as PSNR of
int8 against fp32. Exit codes: 0 written (and agreeing), 1 written but the two disagree by more
than the tolerance, 2 nothing written (one "error: ..." line).
"""
import sys
import time

from mrfnet.commands.deblur import add_model_arguments

EXAMPLE = """
mrfnet export --onnx mrfnet.onnx                                 # the shipped MRFNet
mrfnet export --variant lwrefinenet --weights lw.caffemodel --onnx lw.onnx
"""

# |onnxruntime - pycaffe| allowed by the check after export: float32 summation-order noise
# (measured: at most 2.4e-7 on the shipped MRFNet, 5e-6 on random-weight nets).
COMPARE_TOL = 1e-4
# int8 against pycaffe on a blurred training photo, PSNR of the output in dB (measured: 51.9 dB
# on the shipped MRFNet; 40.9 dB on the tests' random-weight P=2 net, whose outputs span about
# [-3, 3] and so get coarse 8-bit steps; docs/performance.md, "int8").
INT8_MIN_PSNR = 40.0


def add_arguments(p):
    p.add_argument("--onnx", metavar="OUT.onnx",
                   help="file to write (default: the cache that --backend onnxruntime reads, "
                        "MRFNET_CACHE/onnx, default ~/.cache/mrfnet-caffe/onnx; the path is "
                        "printed)")
    add_model_arguments(p)
    p.add_argument("--fixed-size", metavar="WxH",
                   help="fixed input size (batch 1) for ONNX readers that need fixed dims, such as "
                        "OpenCV dnn's readNetFromONNX (default: height and width dynamic)")
    p.add_argument("--no-compare", action="store_true",
                   help="skip running the export and pycaffe on one random input")
    p.add_argument("--int8", action="store_true",
                   help="write the int8 model (static quantization, calibrated on blurred "
                        "training photos; docs/performance.md 'int8')")
    calib = p.add_mutually_exclusive_group()
    calib.add_argument("--calib", metavar="DIR",
                       help="with --int8: calibrate on the blurred images in DIR (training "
                            "photos only: held-out tiles are refused)")
    calib.add_argument("--calib-bundled", action="store_true",
                       help="with --int8: calibrate on the bundled training photos blurred by "
                            "the paper's recipe (the default)")


def compare(deploy, weights, onnx_path, fixed=None):
    """(max |onnxruntime - pycaffe|, input shape) on one random input: of the fixed size, or
    non-square."""
    import numpy as np

    from inference.backends import INPUT_BLOB, OUTPUT_BLOB, load, ort_session

    caffe = load(deploy, weights, "caffe")
    s = caffe.stride
    h, w = fixed or (s * max(4, 64 // s), s * max(4, 64 // s) * 3 // 2 // s * s)
    x = np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32)
    got = ort_session(str(onnx_path)).run([OUTPUT_BLOB], {INPUT_BLOB: x})[0]
    return float(np.abs(got - caffe.forward(x)).max()), x.shape


def compare_int8(deploy, weights, onnx_path, calib=None):
    """(PSNR in dB of the int8 model's output against pycaffe's, input shape) on the first
    calibration photo (real, blurred, a training photo)."""
    import numpy as np

    from inference.backends import INPUT_BLOB, OUTPUT_BLOB, load, ort_session
    from inference.quantize import calibration_set

    caffe = load(deploy, weights, "caffe")
    x = calibration_set(calib, caffe.stride)[0][0]
    got = ort_session(str(onnx_path)).run([OUTPUT_BLOB], {INPUT_BLOB: x})[0]
    mse = float(np.mean((np.clip(got, 0, 1) - np.clip(caffe.forward(x), 0, 1)) ** 2))
    return 10 * np.log10(1 / max(mse, 1e-20)), x.shape


def _write_int8(args, deploy, weights, fixed):
    """(path, fresh) of the int8 model: into --onnx OUT, or into the cache."""
    import tempfile
    from pathlib import Path

    from inference.onnx_export import NetGraph, cached_export, export
    from inference.quantize import cached_int8_export, calibration_set, quantize

    if fixed:
        raise ValueError("--int8 with --fixed-size: not supported (the int8 model keeps height "
                         "and width dynamic)")
    if not args.onnx:
        return cached_int8_export(deploy, weights, args.calib)
    inputs = calibration_set(args.calib, NetGraph(deploy).stride())[0]
    try:
        fp32 = cached_export(deploy, weights)[0]
    except OSError:  # no writable cache: the fp32 export goes to a temporary folder
        fp32 = None
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = fp32 or export(deploy, weights, Path(tmp) / "fp32.onnx")
        return quantize(fp32, args.onnx, inputs), True


def run(args):
    from prototxt_gen.summary import _size as width_height  # the one "WxH" parser

    from inference.errors import InferenceError
    from mrfnet.commands.deblur import _fail
    from inference.models import resolve_model
    from inference.onnx_export import OPSET, cached_export, export

    t0 = time.perf_counter()
    fixed = None
    try:
        if args.fixed_size:
            try:
                fixed = width_height(args.fixed_size)[::-1]  # (height, width)
            except ValueError:
                raise ValueError(f"--fixed-size {args.fixed_size}: write WIDTHxHEIGHT, "
                                 "e.g. 1280x720") from None
            if not args.onnx:
                raise ValueError("--fixed-size needs --onnx OUT.onnx (the cache holds the "
                                 "dynamic-size exports that --backend onnxruntime runs)")
        if args.calib and not args.int8:
            raise ValueError("--calib is for --int8 (the fp32 export needs no calibration)")
        deploy, weights = resolve_model(args.variant, args.deploy, args.weights)
        if args.int8:
            path, fresh = _write_int8(args, deploy, weights, fixed)
        elif args.onnx:
            path, fresh = export(deploy, weights, args.onnx, fixed), True
        else:
            path, fresh = cached_export(deploy, weights)
    except (ValueError, FileNotFoundError) as exc:
        return _fail(str(exc))
    except InferenceError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"cannot write the ONNX model: {exc}")
    what = "wrote" if fresh else "already exported (same prototxt, weights and exporter):"
    dims = f"1 x 3 x {fixed[0]} x {fixed[1]}" if fixed else "N x 3 x H x W (H, W dynamic)"
    what += " int8 model" if args.int8 else ""
    print(f"export: {what} {path} ({path.stat().st_size / 2 ** 20:.1f} MB, ONNX opset {OPSET}) "
          f"from {deploy} + {weights} in {time.perf_counter() - t0:.1f} s; input 'data' "
          f"{dims}, BGR in [0, 1]", file=sys.stderr)
    print(path)
    if args.no_compare:
        return 0
    if args.int8:
        return _report_int8(deploy, weights, path, args.calib)
    try:
        diff, shape = compare(deploy, weights, path, fixed)
    except (ValueError, FileNotFoundError) as exc:
        _fail(f"comparing the export with pycaffe: {exc}")
        return 1
    ok = diff <= COMPARE_TOL
    print(f"export: onnxruntime vs pycaffe on a random {shape[2]}x{shape[3]} input: max |diff| "
          f"{diff:.2g} ({'within' if ok else 'ABOVE'} {COMPARE_TOL:g})", file=sys.stderr)
    return 0 if ok else 1


def _report_int8(deploy, weights, path, calib):
    """Compare the int8 model with pycaffe on a real blurred photo; exit code 0 or 1."""
    from mrfnet.commands.deblur import _fail
    from inference.errors import InferenceError

    try:
        db, shape = compare_int8(deploy, weights, path, calib)
    except (InferenceError, FileNotFoundError) as exc:
        _fail(f"comparing the int8 model with pycaffe: {exc}")
        return 1
    ok = db >= INT8_MIN_PSNR
    print(f"export: int8 vs pycaffe on a blurred training photo ({shape[2]}x{shape[3]}): "
          f"PSNR {db:.1f} dB ({'at least' if ok else 'BELOW'} {INT8_MIN_PSNR:g})",
          file=sys.stderr)
    return 0 if ok else 1
