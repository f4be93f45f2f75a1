"""int8 ONNX models of a deploy net (`mrfnet export --int8`, `mrfnet deblur --precision int8`).

    inputs, names = calibration_set()             # blurred bundled training photos (default)
    inputs, names = calibration_set("calib/blur") # or a folder of blurred images
    quantize(fp32_onnx, out, inputs)              # ONNX Runtime's quantize_static, QDQ format
    cached_int8_export(deploy, weights)           # MRFNET_CACHE/onnx/<stem>-int8-<key>.onnx

Why int8: ONNX Runtime already runs the fp32 net near this CPU's fp32 peak
(docs/performance.md); its int8 convolutions (VNNI) do about twice the work per cycle. The
configuration below was chosen by measurement on the validation tiles (docs/performance.md,
"int8"): minimum/maximum calibration, int8 weights per output channel, uint8 activations, every
node quantized except the chained-residual-pooling sums (`crp_r*_sum*`, eq. 2 of the paper):
each adds a small pooled correction to a large feature map, and rounding their sum to 8 bits
moved a smooth validation tile by 0.164 dB; kept in fp32 the largest move is 0.05 dB. Keeping
the prediction heads, the last residual sums or whole paths in fp32 cost more speed for less.

Calibration sets only ever hold training photos: the default is the bundled training photos
(data_prep.bundled, never the held-out ones) blurred by the paper's recipe with fixed seeds,
so it works without any data set; a folder given with `--calib` is refused when it holds a
photo named in a held-out list (models/*/heldout_aerial.txt: validation and test tiles).
"""
import fnmatch
import functools
import hashlib
import logging
import os
from pathlib import Path

import numpy as np

from .errors import InferenceError

METHODS = ("minmax", "entropy", "percentile")
METHOD = "minmax"          # calibration method (chosen by measurement, module docstring)
PER_CHANNEL = True         # int8 weights with one scale per output channel
SUBPIXEL = True            # ConvTranspose -> Conv + DepthToSpace first (inference.subpixel)
KEEP_FP32 = ("crp_r*_sum*",)  # node-name patterns left in fp32 (fnmatch; measured, docstring)
CALIB_SEED = 0             # blur draws of the bundled calibration photos
CALIB_DRAWS = 1            # each bundled training photo blurred this many times
CALIB_SIZE = 256           # calibration inputs are at most this many pixels on a side
MAX_CALIB_IMAGES = 64      # a --calib folder: the first this many images (sorted names)
_HELDOUT_LISTS = "models/*/heldout_aerial.txt"
_REPO = Path(__file__).resolve().parents[1]


def heldout_names():
    """Stems of every photo named in the project's held-out lists (validation + test tiles)."""
    from data_prep.holdout import read_list

    return {Path(name).name.rsplit(".", 1)[0]
            for path in sorted(_REPO.glob(_HELDOUT_LISTS)) for name in read_list(path)}


def _to_input(bgr, stride):
    """uint8 H x W x 3 BGR -> float32 1 x 3 x h x w in [0, 1], the centre crop of at most
    CALIB_SIZE pixels a side, trimmed to a multiple of `stride`."""
    h, w = (min(d, CALIB_SIZE) // stride * stride for d in bgr.shape[:2])
    top, left = (bgr.shape[0] - h) // 2, (bgr.shape[1] - w) // 2
    crop = bgr[top:top + h, left:left + w]
    return np.ascontiguousarray((crop.astype(np.float32) / 255).transpose(2, 0, 1)[None])


@functools.lru_cache(maxsize=1)
def bundled_calibration():
    """[(name, uint8 BGR)]: the bundled training photos, each blurred CALIB_DRAWS times by the
    paper's recipe at 256x256 (seeds CALIB_SEED, CALIB_SEED + 1, ...)."""
    from data_prep import bundled
    from data_prep.recipe import Recipe, render, sample_streams

    recipe, out = Recipe(size=256), []
    for i, name in enumerate(bundled.names("train")):
        photo = bundled.load(name)
        for d in range(CALIB_DRAWS):
            blurred = render(photo, recipe, sample_streams(CALIB_SEED + d, i, 0, 0))[0]
            out.append((f"{name}_s{CALIB_SEED + d}", blurred))
    return tuple(out)


def folder_calibration(folder):
    """[(name, uint8 BGR)] of the images in `folder` (blurred photos, as the net will see
    them): the first MAX_CALIB_IMAGES by name. Refuses a missing or empty folder and any image
    named in a held-out list."""
    from data_prep.imageio import read_image_with_notes

    return [(n, read_image_with_notes(p)[0]) for n, p in _folder_files(folder)]


def calibration_key(folder=None):
    """A hex digest that names a calibration set without rendering it (the cache is looked up
    before any photo is blurred): for the bundled default the photo names, seeds and the
    recipe's source; for a folder the names and bytes of the images it would use."""
    h = hashlib.sha256()
    if folder is None:
        import skimage

        from data_prep import bundled

        h.update(f"bundled {bundled.names('train')} {CALIB_SEED} {CALIB_DRAWS} {CALIB_SIZE} "
                 f"skimage {skimage.__version__}".encode())
        for module in ("recipe", "kernels", "resize", "bundled"):
            h.update((_REPO / "data_prep" / f"{module}.py").read_bytes())
        return h.hexdigest()
    for name, path in _folder_files(folder):
        h.update(name.encode() + b"\0" + path.read_bytes())
    h.update(str(CALIB_SIZE).encode())
    return h.hexdigest()


def _folder_files(folder):
    """[(name, Path)] of the calibration images in `folder` (checked; see folder_calibration)."""
    from data_prep.sources import list_images

    folder = Path(folder)
    if not folder.is_dir():
        raise InferenceError(f"--calib {folder}: no such folder (give a folder of blurred "
                             "training images, e.g. the blur/ folder `mrfnet pairs` writes)")
    files = list_images(folder)
    if not files:
        raise InferenceError(f"--calib {folder}: no images in it")
    held = sorted(n for n in files if Path(n).name.rsplit(".", 1)[0] in heldout_names())
    if held:
        raise InferenceError(
            f"--calib {folder}: {len(held)} image(s) are held-out validation/test tiles "
            f"({', '.join(held[:3])}{', ...' if len(held) > 3 else ''}); calibrate on training "
            "photos only (mrfnet pairs --exclude models/mrfnet/heldout_aerial.txt)")
    return [(n, files[n]) for n in sorted(files)[:MAX_CALIB_IMAGES]]


def calibration_set(folder=None, stride=8):
    """(inputs, names): float32 network inputs for calibration and their names; `folder`
    None = the bundled default."""
    images = bundled_calibration() if folder is None else folder_calibration(folder)
    small = [n for n, img in images if min(img.shape[:2]) < stride]
    if small:
        raise InferenceError(f"calibration images smaller than the net's stride {stride}: "
                             f"{', '.join(small[:3])}")
    return [_to_input(img, stride) for _, img in images], [n for n, _ in images]


def _config_key():
    return f"{METHOD}/{PER_CHANNEL}/{','.join(KEEP_FP32)}/{SUBPIXEL}"


def fp32_nodes(model, patterns=KEEP_FP32):
    """Names of the nodes of the ONNX model `model` (a ModelProto) that match one of `patterns`
    (fnmatch, the paper's layer names as the exporter writes them): the nodes left in fp32."""
    return [n.name for n in model.graph.node
            if any(fnmatch.fnmatchcase(n.name, p) for p in patterns)]


def quantize(fp32_path, out, inputs, method=METHOD, per_channel=PER_CHANNEL, keep_fp32=KEEP_FP32,
             subpixel=SUBPIXEL):
    """Write the int8 (QDQ) model of the fp32 ONNX model `fp32_path` to `out`, calibrated on
    `inputs` (float32 N x 3 x H x W arrays), with the nodes matching `keep_fp32` (name
    patterns) left in fp32 and, with `subpixel`, every deconvolution rewritten as Conv +
    DepthToSpace first (exact; ONNX Runtime has no int8 ConvTranspose); atomic like the fp32
    export. Returns `out`."""
    import onnx
    from onnxruntime import quantization as q

    from .subpixel import to_subpixel

    if method not in METHODS:
        raise InferenceError(f"unknown calibration method {method!r}: choose one of "
                             f"{', '.join(METHODS)}")
    if not inputs:
        raise InferenceError("int8 export: the calibration set is empty")

    class Reader(q.CalibrationDataReader):
        def __init__(self):
            self._it = iter(inputs)

        def get_next(self):
            x = next(self._it, None)
            return None if x is None else {"data": x}

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    source = out.with_name(f".{out.name}.{os.getpid()}.fp32.tmp")
    extra = {"CalibPercentile": 99.999} if method == "percentile" else {}
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its advice to run onnxruntime's pre-processing: measured
    try:                          # without any gain here (docs/performance.md, "int8")
        model = onnx.load(str(fp32_path))
        if subpixel:
            model = to_subpixel(model)[0]
        onnx.save(model, str(source))
        q.quantize_static(
            str(source), str(tmp), Reader(), quant_format=q.QuantFormat.QDQ,
            per_channel=per_channel, weight_type=q.QuantType.QInt8,
            activation_type=q.QuantType.QUInt8,
            calibrate_method={"minmax": q.CalibrationMethod.MinMax,
                              "entropy": q.CalibrationMethod.Entropy,
                              "percentile": q.CalibrationMethod.Percentile}[method],
            nodes_to_exclude=fp32_nodes(model, keep_fp32), extra_options=extra)
        _stamp(tmp, method, per_channel, len(inputs), keep_fp32)
        os.replace(tmp, out)
    finally:
        root.setLevel(level)
        tmp.unlink(missing_ok=True)
        source.unlink(missing_ok=True)
    return out


def _stamp(path, method, per_channel, n, keep_fp32=()):
    """Add the precision and calibration to the model's metadata (mrfnet.precision = int8)."""
    import onnx

    model = onnx.load(str(path))
    props = {p.key: p.value for p in model.metadata_props}
    props.update({"mrfnet.precision": "int8", "mrfnet.calibration":
                  f"{method}, per-channel {per_channel}, {n} images, fp32 nodes: "
                  f"{', '.join(keep_fp32) or 'none'}"})
    onnx.helper.set_model_props(model, props)
    onnx.save(model, str(path))


def int8_cache_path(fp32_path, calib_key):
    """Cache entry of the int8 model of an fp32 export: keyed by the fp32 export's own cache
    name (its prototxt, weights and exporter), this module and inference/subpixel.py, ONNX
    Runtime's version, the configuration and the calibration inputs' contents."""
    import onnxruntime

    from . import subpixel

    h = hashlib.sha256(Path(fp32_path).name.encode())
    for module in (__file__, subpixel.__file__):  # the code that makes the int8 graph
        h.update(Path(module).read_bytes())
    h.update(onnxruntime.__version__.encode())
    h.update(_config_key().encode())
    h.update(calib_key.encode())
    stem = Path(fp32_path).stem.rsplit("-", 1)[0]
    return Path(fp32_path).with_name(f"{stem}-int8-{h.hexdigest()[:16]}.onnx")


def cached_int8_export(deploy, weights, calib=None, stride=8):
    """(path, fresh) of the int8 model of deploy + weights in the cache, calibrated on `calib`
    (a folder) or the bundled default; exported and quantized now if it is not there yet."""
    from .onnx_export import cached_export

    fp32, _ = cached_export(deploy, weights)
    path = int8_cache_path(fp32, calibration_key(calib))
    if path.is_file():
        return path, False
    return quantize(fp32, path, calibration_set(calib, stride)[0]), True


def has_vnni(cpuinfo="/proc/cpuinfo"):
    """True when the CPU has 8-bit dot-product instructions (AVX512-VNNI, AVX-VNNI or AMX),
    which ONNX Runtime's int8 convolutions use; read from /proc/cpuinfo (Linux)."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})
    except OSError:
        pass
    return False


# int8 is the CPU default (where the CPU has VNNI) only for weights that keep the quality rule on
# the validation pairs (mean PSNR within 0.02 dB of fp32, no pair moved by more than 0.1 dB;
# `make bench VAL=DIR` measures it, tests/test_int8.py re-checks it for the shipped weights):
# the first 16 hex digits of the sha256 of each such caffemodel. Measured on val42 with the CRP
# sums in fp32 and the sub-pixel deconvolutions (docs/performance.md, "int8"):
#   6bb1aa95084ebbc5  shipped in the sixth session: -0.011 dB mean, 0.094 dB largest move
#   1c43b4481abf59f8  shipped in the fifth session: -0.010 dB mean, 0.045 dB largest move
# (fifth-session weights with every node in int8: 0.164 dB on rsscn7_bField_b032_s0, a fail).
# Any other caffemodel (your own training) runs fp32 unless --precision int8 is asked for.
INT8_DEFAULT_WEIGHTS = ("6bb1aa95084ebbc5", "1c43b4481abf59f8")


def weights_digest(weights):
    """First 16 hex digits of the sha256 of a weights file (the INT8_DEFAULT_WEIGHTS key)."""
    from .onnx_export import file_sha256

    return file_sha256(weights)[:16]


def default_precision(weights, cpuinfo="/proc/cpuinfo"):
    """The precision `--precision auto` picks for the caffemodel `weights` on this CPU: int8
    where the CPU has VNNI and the weights are in INT8_DEFAULT_WEIGHTS, else fp32."""
    if not has_vnni(cpuinfo):
        return "fp32"
    return "int8" if weights_digest(weights) in INT8_DEFAULT_WEIGHTS else "fp32"
