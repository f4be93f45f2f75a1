"""Three ways to run a deploy net behind one small interface.

    backend = load(deploy, weights, backend="caffe" | "opencv" | "onnxruntime")
    out = backend.forward(x)      # x: float32 N x 3 x H x W, BGR, values in [0, 1]
                                  # out: float32 N x 3 x H x W ("predict_deblur"), same convention

- "caffe": pycaffe, the reference. CPU by default; GPU with gpu=True when the Caffe build links
  CUDA. Weights are checked against the prototxt before copying (see inference.weights).
- "opencv": cv2.dnn.readNetFromCaffe on the same two files, so people can deblur without building
  Caffe (imports no caffe module at all).
- "onnxruntime": ONNX Runtime (CPU provider) on the ONNX export of the same two files
  (inference.onnx_export; exported once per caffemodel into the cache), or on an .onnx file
  given as the weights (then no Caffe module is imported either).

H and W must be multiples of `backend.stride` (2^(P-1), read from the net's blob shapes); the
tiling module pads for that. `memory_model()` gives (fixed bytes, bytes per input pixel) for
choosing tile sizes.
"""
import math
import time
from pathlib import Path

import numpy as np

from mrfnet.caffe_memory import reuse_blob_memory
from mrfnet.netfile import layer_spec
from mrfnet.sysmem import measure_forward

from .errors import InferenceError, ModelNotFoundError, WeightsMismatchError
from .netfile import DeployNet

INPUT_BLOB = "data"
OUTPUT_BLOB = "predict_deblur"
BACKENDS = ("caffe", "opencv", "onnxruntime")
# Numeric precisions of the onnxruntime backend; "auto" = an .onnx file's own, and for a
# caffemodel inference.quantize.default_precision() (int8 with VNNI for the weights whose
# quality was checked, INT8_DEFAULT_WEIGHTS; fp32 otherwise).
PRECISIONS = ("auto", "fp32", "int8")
# The CPU default of `mrfnet deblur`: the fastest backend of `make bench` (docs/benchmarks.md).
DEFAULT_CPU_BACKEND = "onnxruntime"
# ONNX Runtime's graph optimisation levels, by the names the options take.
ORT_LEVELS = ("all", "extended", "basic", "disabled")
# Probe side for shape questions: a multiple of every power-of-two stride up to 256.
_PROBE = 256


def _check_input(x, stride):
    if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 4 or x.shape[1] != 3:
        raise InferenceError("backend input must be float32 N x 3 x H x W (BGR, [0,1]), got "
                             f"{getattr(x, 'dtype', type(x))} {getattr(x, 'shape', '')}")
    if x.shape[2] % stride or x.shape[3] % stride:
        raise InferenceError(f"input {x.shape[2]}x{x.shape[3]} is not a multiple of the net's "
                             f"stride {stride}; pad it first (inference.tiling.pad_to_stride)")


def _stride_from_heights(heights, probe=_PROBE):
    ratios = [probe // h for h in heights if h and probe % h == 0]
    return max(ratios) if ratios else 1


class Backend:
    """Common part: file checks, timing of the load, stride."""

    name = "?"

    def __init__(self, deploy, weights, allow_python_layers=False):
        self.deploy = Path(deploy)
        self.weights = Path(weights)
        self.netfile = DeployNet(self.deploy)
        self.netfile.check_safe(allow_python_layers)
        self.netfile.check_blobs(INPUT_BLOB, OUTPUT_BLOB)
        self.netfile.check_graph()
        if not self.weights.is_file():
            raise ModelNotFoundError(f"weights file not found: {self.weights}")
        t0 = time.perf_counter()
        self._load()
        self.load_seconds = time.perf_counter() - t0
        self.stride = self._stride()
        named = self.netfile.stride_from_names
        if named and named != self.stride:
            raise InferenceError(f"{self.deploy}: blob shapes give stride {self.stride}, but the "
                                 f"pred_r1..pred_r{self.netfile.num_paths} names say {named}")

    def forward(self, x):
        _check_input(x, self.stride)
        out = self._forward(x)
        if out.shape != x.shape:
            raise InferenceError(f"{self.deploy}: output {out.shape} differs from input {x.shape}")
        return out

    def describe(self):
        return f"{self.name} ({self.device})"


class CaffeBackend(Backend):
    name = "caffe"

    def __init__(self, deploy, weights, gpu=False, allow_python_layers=False):
        self.gpu = gpu
        self.device = "gpu" if gpu else "cpu"
        import caffe  # imported before the load is timed: Table IV times the model, not Python

        self._caffe = caffe
        super().__init__(deploy, weights, allow_python_layers)

    def _load(self):
        from .weights import copy_checked

        caffe = self._caffe
        self.netfile.check_types(caffe.layer_type_list())
        if self.gpu:
            if not caffe_has_cuda():
                raise InferenceError("--gpu: this Caffe build has no CUDA (CPU_ONLY); drop --gpu")
            caffe.set_mode_gpu()
            caffe.set_device(0)
        else:
            caffe.set_mode_cpu()
        self.net = caffe.Net(str(self.deploy), caffe.TEST)
        copy_checked(self.net, self.weights, self.deploy)
        self.reuses_memory = reuse_blob_memory(self.net)  # only the output is read
        self._memory = None

    def _reshape(self, shape):
        blob = self.net.blobs[INPUT_BLOB]
        if tuple(blob.shape) != tuple(shape):
            blob.reshape(*shape)
            self.net.reshape()

    def _stride(self):
        self._reshape((1, 3, _PROBE, _PROBE))
        return _stride_from_heights([b.shape[2] for b in self.net.blobs.values()
                                     if len(b.shape) == 4])

    def _forward(self, x):
        self._reshape(x.shape)
        self.net.blobs[INPUT_BLOB].data[...] = x
        self.net.forward()
        return np.array(self.net.blobs[OUTPUT_BLOB].data, dtype=np.float32, copy=True)

    def memory_model(self):
        """(fixed bytes, bytes per input pixel) of a CPU forward.

        Blobs: with blob memory reuse (tools/caffe/patches/0003) the pool's buffers after one
        forward at the probe size, the input and output blobs, which keep their own memory, and
        one max pooling argmax scratch; without it (stock Caffe) every blob, Split tops counted
        once as they share their bottom, and an argmax mask per max pooling layer.
        The convolution layers share one im2col buffer (patch 0001), as large as the largest
        layer's (in_channels x kh x kw) x (column count) floats. All of it scales with the input's
        pixel count; the probe forward runs once per backend.
        """
        if self._memory is None:
            self._reshape((1, 3, _PROBE, _PROBE))
            shape = {name: tuple(b.shape) for name, b in self.net.blobs.items()}
            layers = list(zip(self.net._layer_names, self.net.layers))
            masks = [int(np.prod(shape[self.net.top_names[name][0]]))
                     for name, layer in layers if layer.type == "Pooling"] or [0]
            if self.reuses_memory:
                self.net.blobs[INPUT_BLOB].data[...] = 0
                self.net.forward()
                kept = {INPUT_BLOB, *self.net.outputs}
                blobs = (self.net.blob_memory_pool_bytes() // 4
                         + sum(int(np.prod(shape[name])) for name in kept)
                         + max(masks))  # one argmax scratch shared by the pooling layers
            else:
                shared = {t for name, layer in layers
                          if layer.type == "Split" for t in self.net.top_names[name]}
                blobs = (sum(int(np.prod(s)) for name, s in shape.items() if name not in shared)
                         + sum(masks))  # an argmax mask per max pooling layer
            params = sum(p.data.size for ps in self.net.params.values() for p in ps)
            self._memory = 4 * params, 4.0 * (blobs + self._im2col_floats(shape)) / _PROBE ** 2
        return self._memory

    def _im2col_floats(self, shape):
        """Floats of the one im2col buffer the convolution layers share, for these blob shapes."""
        cols = 0
        specs = {l["name"]: layer_spec(l["fields"], self.deploy) for l in self.netfile.layers
                 if l["type"] in ("Convolution", "Deconvolution")}
        for name, layer in zip(self.net._layer_names, self.net.layers):
            if layer.type not in ("Convolution", "Deconvolution"):
                continue
            kh, kw = self.net.params[name][0].data.shape[2:]
            spec = specs.get(name)
            plain = spec is None or (spec.stride == (1, 1) and spec.pad == (0, 0))
            if (kh, kw) == (1, 1) and plain:
                continue  # Caffe skips im2col for 1x1 stride-1 unpadded convolutions
            bottom = shape[self.net.bottom_names[name][0]]
            top = shape[self.net.top_names[name][0]]
            if layer.type == "Convolution":
                cols = max(cols, bottom[1] * kh * kw * top[2] * top[3])
            else:  # Deconvolution: col2im from the output channels at the input's size
                cols = max(cols, top[1] * kh * kw * bottom[2] * bottom[3])
        return cols


class OpenCVBackend(Backend):
    name = "opencv"
    device = "cpu"

    def __init__(self, deploy, weights, allow_python_layers=False):
        import cv2  # imported before the load is timed

        self._cv2 = cv2
        self._memory = None
        super().__init__(deploy, weights, allow_python_layers)

    def _load(self):
        cv2 = self._cv2
        self.output_blob = OUTPUT_BLOB
        try:
            if any(l["type"] == "Split" for l in self.netfile.layers):
                text, self.output_blob = self.netfile.without_split_layers(OUTPUT_BLOB)
                self.net = cv2.dnn.readNetFromCaffe(np.frombuffer(text.encode(), np.uint8),
                                                    np.fromfile(str(self.weights), np.uint8))
            else:
                self.net = cv2.dnn.readNetFromCaffe(str(self.deploy), str(self.weights))
        except cv2.error as exc:
            raise InferenceError(f"OpenCV could not load {self.deploy} with {self.weights}: "
                                 f"{_cv_msg(exc)}") from exc
        self.net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        self.net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)

    def _stride(self):
        try:
            _, _, outs = self.net.getLayersShapes([1, 3, _PROBE, _PROBE])
        except self._cv2.error as exc:
            raise WeightsMismatchError(f"weights {self.weights} do not fit {self.deploy} "
                                       f"(OpenCV: {_cv_msg(exc)})") from exc
        heights = [int(s[2]) for layer in outs for s in layer if len(s) == 4]
        return _stride_from_heights(heights)

    def _forward(self, x):
        try:
            self.net.setInput(np.ascontiguousarray(x), INPUT_BLOB)
            out = self.net.forward(self.output_blob)
        except self._cv2.error as exc:
            raise WeightsMismatchError(f"OpenCV forward of {self.deploy} with {self.weights} "
                                       f"failed; do the weights fit the prototxt? "
                                       f"({_cv_msg(exc)})") from exc
        return np.asarray(out, dtype=np.float32)

    def memory_model(self):
        """(fixed bytes, bytes per input pixel) of a CPU forward, measured once per backend.

        OpenCV reuses blob memory in ways that depend on its version and fusions, so the sum of
        all blobs (`getMemoryConsumption`) is 3-4x what MRFNet needs: with it the tile planner
        cut a 1280x720 GOPRO frame into 4 tiles and took twice as long. Instead the peak RSS
        growth of one forward at a probe size is measured in a fresh process
        (inference.memprobe, about a second). A measurement below the bytes of blobs alive at
        one time (`_live_blob_peak`, a lower bound for any forward) is not trusted; then, and
        where nothing can be measured, the sum of all blobs is used.
        """
        if self._memory is None:
            shape = [1, 3, _PROBE, _PROBE]
            weights, all_blobs = self.net.getMemoryConsumption(shape)
            self._memory = _measured_model(self, self.weights, weights,
                                           self._live_blob_peak(shape), all_blobs)
        return self._memory

    def _live_blob_peak(self, shape):
        """The most bytes of blobs alive at once in a forward of `shape` (lifetimes from the
        layer graph, sizes from OpenCV's shapes): a lower bound for any forward."""
        ids, _, outs = self.net.getLayersShapes(shape)
        out_shapes = {self.net.getLayer(int(i)).name: o for i, o in zip(np.ravel(ids), outs)}
        size = {INPUT_BLOB: 4 * int(np.prod(shape))}
        for layer in self.netfile.layers:
            for top, out in zip(layer["tops"], out_shapes.get(layer["name"], ())):
                size.setdefault(top, 4 * int(np.prod(out)))
        return live_blob_bytes(self.netfile, size, keep=[self.output_blob])


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime's CPU provider on the ONNX export of the deploy net.

    `weights` is a caffemodel (exported once into inference.onnx_export.cache_dir(), keyed by
    both files' contents, and run from there) or an .onnx file made by `mrfnet export` (checked
    against the deploy net: input, outputs, every weight's shape). ONNX Runtime's own options:
    `threads` (intra-op threads; None = ONNX Runtime's choice, one per physical core),
    `optimization` (graph optimisation level, one of ORT_LEVELS; "all" adds the NCHWc layout
    that makes its convolutions fast), `arena` (a CPU memory arena, which keeps freed memory for
    the next forward instead of returning it; see _exact_arena) and `spinning` (idle worker
    threads spin waiting for work; off by default: on a machine whose cores other work shares,
    spinning made forwards 10-17% slower, and on a quiet one it saves only the wake-ups between
    MRFNet's ~100 operators of milliseconds each).
    """

    name = "onnxruntime"
    device = "cpu"

    def __init__(self, deploy, weights, allow_python_layers=False, threads=None,
                 optimization="all", arena=True, spinning=False, precision=None, calib=None):
        try:
            import onnxruntime  # noqa: F401  (imported before the load is timed)
        except ImportError as exc:
            raise InferenceError("--backend onnxruntime needs the 'onnxruntime' package: "
                                 "pip install -r requirements.txt") from exc
        if optimization not in ORT_LEVELS:
            raise InferenceError(f"unknown ONNX Runtime optimisation level {optimization!r}: "
                                 f"choose one of {', '.join(ORT_LEVELS)}")
        if precision is not None and precision not in PRECISIONS:
            raise InferenceError(f"unknown precision {precision!r}: choose one of "
                                 f"{', '.join(PRECISIONS)}")
        self.options = {"threads": threads, "optimization": optimization, "arena": arena,
                        "spinning": spinning}
        self.precision, self.calib = precision, calib
        self._memory = None
        super().__init__(deploy, weights, allow_python_layers)

    def _load(self):
        from .onnx_export import NetGraph, build_model, cached_export, export, read_checked_onnx

        self.graph = NetGraph(self.netfile)
        self.exported = False
        if self.weights.suffix.lower() == ".onnx":
            self.onnx_path = self.weights
            model, file_int8 = read_checked_onnx(self.weights, self.graph, with_precision=True)
            self.precision = _file_precision(self.weights, file_int8, self.precision)
        elif self._resolve_precision() == "int8":
            model = str(self._int8_path())
        else:
            try:
                self.onnx_path, self.exported = cached_export(self.deploy, self.weights)
                model = str(self.onnx_path)
            except OSError:  # no writable cache: export into memory, every run
                self.onnx_path, self.exported = None, True
                model = build_model(self.deploy, self.weights, self.graph).SerializeToString()
            if not self.exported and self.onnx_path:
                try:
                    self.session = ort_session(model, **self.options)
                    return
                except Exception:  # a damaged cache entry (the cache is ours): export it again
                    export(self.deploy, self.weights, self.onnx_path)
                    self.exported = True
        try:
            self.session = ort_session(model, **self.options)
        except Exception as exc:  # onnxruntime's own exception types (Fail, InvalidGraph, ...)
            raise InferenceError(f"ONNX Runtime could not load {self.onnx_path or self.weights}: "
                                 f"{_first_line(exc)}") from exc

    def _resolve_precision(self):
        if self.precision is None:  # the library's default for a caffemodel: fp32
            self.precision = "fp32"
        if self.precision == "auto":
            from .quantize import default_precision

            self.precision = default_precision(self.weights)
        return self.precision

    def _int8_path(self):
        """The int8 model of the caffemodel in the cache (quantized now when it is not there:
        calibration, about 10-40 s once per weights file and calibration set)."""
        from .quantize import cached_int8_export

        try:
            self.onnx_path, self.exported = cached_int8_export(
                self.deploy, self.weights, self.calib, self.graph.stride(_PROBE))
        except OSError as exc:
            raise InferenceError(f"int8 export of {self.weights} failed: {exc} (is the cache "
                                 "MRFNET_CACHE writable?)") from exc
        return self.onnx_path

    def _stride(self):
        return self.graph.stride(_PROBE)

    def _forward(self, x):
        try:
            return np.asarray(self.session.run([OUTPUT_BLOB], {INPUT_BLOB: x})[0],
                              dtype=np.float32)
        except Exception as exc:  # onnxruntime's own exception types
            raise InferenceError(f"ONNX Runtime forward of {self.onnx_path or self.weights} "
                                 f"failed: {_first_line(exc)}") from exc

    def describe(self):
        return (f"{self.name} ({self.device}, {self.precision}, "
                f"{self.onnx_path or 'exported in memory'})")

    def memory_model(self):
        """(fixed bytes, bytes per input pixel) of a CPU forward, measured once per backend.

        As for OpenCV: ONNX Runtime plans its buffers itself (tensors share memory once dead,
        the NCHWc layout adds reordered copies), so the peak RSS growth of one forward at a
        probe size is measured in a fresh process (inference.memprobe). A measurement below the
        bytes of blobs alive at one time (from the layer graph) is not trusted; then, and where
        nothing can be measured, the sum of all blobs is used.
        """
        if self._memory is None:
            size = self.graph.blob_bytes(_PROBE, _PROBE)
            params = sum(math.prod(s) for ss in self.graph.param_shapes().values() for s in ss)
            self._memory = _measured_model(
                self, self.onnx_path or self.weights, 4 * params,
                live_blob_bytes(self.netfile, size, keep=[OUTPUT_BLOB]), sum(size.values()))
        return self._memory


def _file_precision(path, file_int8, asked):
    """The precision of an .onnx file given as the weights, checked against the one asked."""
    have = "int8" if file_int8 else "fp32"
    if asked not in (None, "auto", have):
        how = ("mrfnet export --int8 --onnx OUT.onnx" if asked == "int8"
               else "mrfnet export --onnx OUT.onnx")
        raise InferenceError(f"{path} is an {have} model but --precision {asked} was asked: "
                             f"drop --precision, or export an {asked} one ({how})")
    return have


_EXACT_ARENA = []  # registered once per process


def _exact_arena(ort):
    """Register ONNX Runtime's shared CPU arena growing by exactly the size asked for
    (kSameAsRequested). Its own default arena grows in powers of two, which made a forward's
    memory per pixel jump with the image size (MRFNet P=4: 1.16 KB/px at 256x256, 1.51 at
    384x384, 1.56 at 768x768), beyond what the tile planner's safety factor covers; with this
    one it stays within 3% (1.41, 1.41, 1.45) at the same speed."""
    if not _EXACT_ARENA:
        info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0,
                                 ort.OrtMemType.DEFAULT)
        ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, 1, -1, -1))
        _EXACT_ARENA.append(info)


def ort_session(model, threads=None, optimization="all", arena=True, spinning=False):
    """An ONNX Runtime CPU session for `model` (a path or the model's bytes) with the options of
    OnnxRuntimeBackend (threads None or 0: ONNX Runtime's choice)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3  # errors only; they become exceptions anyway
    so.intra_op_num_threads = int(threads or 0)
    level = ort.GraphOptimizationLevel
    so.graph_optimization_level = {
        "all": level.ORT_ENABLE_ALL, "extended": level.ORT_ENABLE_EXTENDED,
        "basic": level.ORT_ENABLE_BASIC, "disabled": level.ORT_DISABLE_ALL}[optimization]
    so.enable_cpu_mem_arena = bool(arena)
    if arena:
        _exact_arena(ort)
        so.add_session_config_entry("session.use_env_allocators", "1")
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def live_blob_bytes(netfile, size, keep=()):
    """The most bytes of blobs alive at once over the layers of `netfile` ({blob: bytes} for
    the sizes, lifetimes from the layer graph, blobs in `keep` to the end): a lower bound for
    the memory of any forward."""
    life = netfile.lifetimes(keep=keep)
    return max(sum(size.get(b, 0) for b, (first, last) in life.items() if first <= i <= last)
               for i in range(len(netfile.layers)))


def _measured_model(backend, weights, fixed, live, all_blobs):
    """(fixed, bytes per pixel): the peak growth of one forward at the probe size, measured in
    a fresh process (inference.memprobe), or `all_blobs` bytes where that measurement is
    missing or below `live` (the blobs alive at one time, a lower bound)."""
    measured = measure_forward(backend.deploy, weights, backend.name, _PROBE)
    ok = measured is not None and measured >= live
    return int(fixed), float(measured if ok else all_blobs) / (_PROBE * _PROBE)


def _cv_msg(exc):
    lines = [l.strip() for l in str(exc).splitlines() if l.strip()]
    return lines[-1] if lines else str(exc)


def _first_line(exc):
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def caffe_has_cuda():
    """True when the imported Caffe library links the CUDA runtime (a GPU build)."""
    import caffe  # noqa: F401  (load the shared libraries first)
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return False
    return "libcudart" in maps


def load(deploy, weights, backend="caffe", gpu=False, allow_python_layers=False, **options):
    """Open a deploy net with its weights on the chosen backend (see module docstring).
    `options` go to the onnxruntime backend (threads, optimization, arena, spinning,
    precision, calib); precision None, "auto" or "fp32" is accepted by every backend (pycaffe
    and OpenCV dnn run in fp32), and the onnxruntime backend's default is fp32."""
    if backend not in BACKENDS:
        raise InferenceError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if gpu and backend != "caffe":
        raise InferenceError("--gpu is only supported with --backend caffe")
    precision, calib = options.pop("precision", None), options.pop("calib", None)
    if backend == "onnxruntime":
        options.update({k: v for k, v in (("precision", precision), ("calib", calib)) if v})
    elif precision == "int8" or calib:
        raise InferenceError(f"--precision int8{' and --calib' if calib else ''}: int8 runs on "
                             f"--backend onnxruntime only ({backend} has no int8 path here); "
                             "drop them or use --backend onnxruntime")
    if options and backend != "onnxruntime":
        raise InferenceError(f"options {', '.join(options)} are for --backend onnxruntime only")
    if Path(weights).suffix.lower() == ".onnx" and backend != "onnxruntime":
        raise InferenceError(f"{weights} is an ONNX model: run it with --backend onnxruntime, "
                             f"or give {backend} the .caffemodel it was exported from")
    if backend == "caffe":
        return CaffeBackend(deploy, weights, gpu=gpu, allow_python_layers=allow_python_layers)
    if backend == "opencv":
        return OpenCVBackend(deploy, weights, allow_python_layers=allow_python_layers)
    return OnnxRuntimeBackend(deploy, weights, allow_python_layers=allow_python_layers, **options)
