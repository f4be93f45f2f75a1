"""`mrfnet export --onnx OUT.onnx`: a deploy net with its caffemodel as one ONNX model.

    mrfnet export --onnx mrfnet.onnx                                 # the shipped MRFNet
    mrfnet export --variant lwrefinenet --weights lw.caffemodel --onnx lw.onnx
    mrfnet export --deploy net.prototxt --weights net.caffemodel --onnx net.onnx
    mrfnet export                     # into the cache that `--backend onnxruntime` runs from

The file runs in ONNX Runtime (`mrfnet deblur --backend onnxruntime --weights OUT.onnx`, or
any program with `onnxruntime.InferenceSession`) and in other ONNX readers; its input "data"
is float32 N x 3 x H x W, BGR in [0, 1], H and W any multiples of the net's stride
(`--fixed-size WxH` fixes them for readers that need it, such as OpenCV dnn's ONNX importer).
After writing, ONNX Runtime and pycaffe run the same random input and the largest difference
is printed (--no-compare skips that). Exit codes: 0 written (and agreeing), 1 written but the
two disagree by more than the tolerance, 2 nothing written (one "error: ..." line).
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


def run(args):
    from prototxt_gen.summary import _size as width_height  # the one "WxH" parser

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
        deploy, weights = resolve_model(args.variant, args.deploy, args.weights)
        if args.onnx:
            path, fresh = export(deploy, weights, args.onnx, fixed), True
        else:
            path, fresh = cached_export(deploy, weights)
    except (ValueError, FileNotFoundError) as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"cannot write the ONNX model: {exc}")
    what = "wrote" if fresh else "already exported (same prototxt, weights and exporter):"
    dims = f"1 x 3 x {fixed[0]} x {fixed[1]}" if fixed else "N x 3 x H x W (H, W dynamic)"
    print(f"export: {what} {path} ({path.stat().st_size / 2 ** 20:.1f} MB, ONNX opset {OPSET}) "
          f"from {deploy} + {weights} in {time.perf_counter() - t0:.1f} s; input 'data' "
          f"{dims}, BGR in [0, 1]", file=sys.stderr)
    print(path)
    if args.no_compare:
        return 0
    try:
        diff, shape = compare(deploy, weights, path, fixed)
    except (ValueError, FileNotFoundError) as exc:
        _fail(f"comparing the export with pycaffe: {exc}")
        return 1
    ok = diff <= COMPARE_TOL
    print(f"export: onnxruntime vs pycaffe on a random {shape[2]}x{shape[3]} input: max |diff| "
          f"{diff:.2g} ({'within' if ok else 'ABOVE'} {COMPARE_TOL:g})", file=sys.stderr)
    return 0 if ok else 1
