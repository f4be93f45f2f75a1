"""A Caffe deploy net and its caffemodel as one ONNX model (`mrfnet export --onnx`), and the
cache of exported models that the onnxruntime backend runs.

    graph = NetGraph(deploy)               # the prototxt as the exporter sees it (no Caffe needed)
    model = build_model(deploy, weights)   # onnx.ModelProto, built with onnx.helper
    export(deploy, weights, "m.onnx")      # checked by onnx.checker, written atomically
    cached_export(deploy, weights)         # MRFNET_CACHE/onnx/<weights stem>-<key>.onnx

The graph is built node by node from the prototxt (parsed by inference.netfile) and the
caffemodel's blobs (read with caffe_pb2 and checked against the net's shapes first, as for
pycaffe). The input "data" is N x C x H x W with N, H and W symbolic ("batch", "height",
"width"), so one file serves every image size; the outputs are the net's outputs under their
Caffe names (predict_deblur, predict_deblur_255), and their dims follow the input's.

Layers, with Caffe's TEST-phase meaning (anything else is refused, naming the layers):
  Input                     graph input
  Convolution               Conv            (same weight layout; group, dilation, no bias)
  Deconvolution             ConvTranspose   (same weight layout: C_in x C_out/group x kh x kw),
                            then an identity 1x1 Conv (LAYOUT_CONV_AFTER_DECONV)
  Pooling MAX               MaxPool         (Caffe rounds the output size up: ceil_mode)
  Pooling AVE, pad 0        AveragePool     (Caffe divides edge windows by their true size)
  Pooling global            GlobalMaxPool / GlobalAveragePool
  ReLU                      Relu, LeakyRelu with negative_slope
  Eltwise SUM / PROD / MAX  Add or Sum (Mul by coefficients) / Mul / Max
  Concat, Sigmoid, TanH     Concat, Sigmoid, Tanh
  Power                     Mul, Add, Pow   ((shift + scale x) ^ power)
  Split, Dropout            no node: later layers read the same tensor (Identity for an output)

Opset 17, IR version 8, for ONNX Runtime and other ONNX readers of the last years. Readers that
need fixed dims (OpenCV 4.10's dnn ONNX importer cannot follow symbolic H and W through the
Concat of two scales) get an export with `fixed=(H, W)` (`mrfnet export --fixed-size WxH`).
"""
import hashlib
import math
import os
from pathlib import Path

import numpy as np

from .errors import InferenceError, ModelNotFoundError, UnsupportedLayerError, WeightsMismatchError
from mrfnet.netfile import (NetFileError, UnsupportedNetError, conv_size, deconv_size, get_all,
                            get_one, in_phase, layer_spec, pooled_hw)

from .netfile import DeployNet

OPSET = 17
IR_VERSION = 8
DIMS = ("batch", "height", "width")
PRODUCER = "mrfnet-caffe export"
# Two probe sizes (multiples of 128, so every stride up to 2^7 divides them) to tell output
# dims that follow the input's from fixed ones.
_PROBES = ((256, 384), (512, 256))
SUPPORTED = ("Input", "Convolution", "Deconvolution", "Pooling", "ReLU", "Eltwise", "Concat",
             "Power", "Sigmoid", "TanH", "Split", "Dropout")
_NO_NODE = ("Split", "Dropout")
# Each Deconvolution's ConvTranspose is followed by a 1x1 Conv with identity weights (exact:
# x * 1 plus zeros). ONNX Runtime's fast CPU convolutions work in a blocked channel layout
# (NCHWc) that ConvTranspose does not support; its output stayed in plain NCHW, and so did
# every Concat and residual Add that reads it, with a layout reorder at each meeting point:
# 27 reorders in MRFNet P=4 (13% of a forward). The 1x1 Conv takes the tensor into the blocked
# layout once: 7 reorders, 11-15% faster forwards for 1.4% more multiply-adds (measured with
# ONNX Runtime 1.26, 256x256 and 1280x720, one thread).
LAYOUT_CONV_AFTER_DECONV = True


def _onnx():
    try:
        import onnx
        from onnx import helper, numpy_helper  # noqa: F401
    except ImportError as exc:
        raise InferenceError("the ONNX exporter needs the 'onnx' package: "
                             "pip install -r requirements.txt") from exc
    return onnx


def _ints(fields, name):
    return [int(v) for v in get_all(fields, name)]


def _check_exportable(layer, what):
    """Refuse the settings ONNX cannot express here (the net itself is fine for Caffe)."""
    if layer.type in ("Convolution", "Deconvolution") and layer.axis != 1:
        raise UnsupportedLayerError(f"{what}: convolution over axis != 1 does not export")
    if layer.type == "Pooling":
        if layer.pool not in ("MAX", "AVE"):
            raise UnsupportedLayerError(f"{what}: pool {layer.pool} does not export "
                                        "(MAX and AVE do)")
        if layer.pool == "AVE" and any(layer.pad) and not layer.global_pooling:
            raise UnsupportedLayerError(
                f"{what}: padded average pooling counts padding the Caffe way, which ONNX "
                "AveragePool cannot express; use pad 0")
    if layer.type == "Eltwise" and layer.coeff and (layer.operation != "SUM"
                                                    or len(layer.coeff) != len(layer.bottoms)):
        raise InferenceError(f"{what}: coeff needs operation SUM and one per bottom")
    return layer


def _spec(raw, path):
    """The layer's LayerSpec (Caffe's defaults filled in), checked for export."""
    try:
        spec = layer_spec(raw["fields"], path)
    except UnsupportedNetError as exc:
        raise UnsupportedLayerError(str(exc)) from None
    except NetFileError as exc:
        raise InferenceError(str(exc)) from None
    return _check_exportable(spec, f"{path}: layer {spec.name!r} ({spec.type})")


class NetGraph:
    """A deploy prototxt as the exporter and the onnxruntime backend see it: its TEST-phase
    layers with their settings, the input blob and its channels, and Caffe's shape rules.

    Refuses (UnsupportedLayerError) a net with layers ONNX cannot express here, naming them.
    """

    def __init__(self, deploy):
        self.net = deploy if isinstance(deploy, DeployNet) else DeployNet(deploy)
        self.path = self.net.path
        raw = [l for l in self.net.layers if in_phase(l["fields"], "TEST")]
        python = self.net.python_layers
        if python:
            raise UnsupportedLayerError(
                f"{self.path}: layer(s) {', '.join(python)} are Python layers: they run Python "
                "code that an ONNX model cannot carry. Export the deploy net made by "
                "`mrfnet prototxt` (stock layers only), or run this one with pycaffe "
                "(--backend caffe --allow-python-layers).")
        odd = [f"{l['name']} ({l['type']})" for l in raw if l["type"] not in SUPPORTED]
        if odd:
            raise UnsupportedLayerError(
                f"{self.path}: layer(s) {', '.join(odd)} cannot be exported to ONNX; the "
                f"exporter knows {', '.join(SUPPORTED)} (every layer `mrfnet prototxt` writes). "
                "pycaffe runs any Caffe layer: --backend caffe.")
        self.net.check_graph()
        self.layers = [_spec(l, self.path) for l in raw]
        self.inputs = self._inputs(raw)
        if len(self.inputs) != 1:
            raise UnsupportedLayerError(f"{self.path}: {len(self.inputs)} input blobs; the "
                                        "exporter takes nets with one image input")
        (self.input, self.channels), = self.inputs.items()
        self.outputs = self._outputs()

    def _inputs(self, raw):
        """{input blob: channels} from Input layers or the old top-level input fields."""
        out = {}
        for l in raw:
            if l["type"] == "Input":
                dims = [_ints(s, "dim") for s in get_all(get_one(l["fields"], "input_param", []),
                                                         "shape")]
                for i, top in enumerate(l["tops"]):
                    d = dims[min(i, len(dims) - 1)] if dims else []
                    out[top] = self._channels(d, top)
        names = get_all(self.net.fields, "input")
        shapes = [_ints(s, "dim") for s in get_all(self.net.fields, "input_shape")]
        flat = _ints(self.net.fields, "input_dim")
        for i, name in enumerate(names):
            d = shapes[i] if i < len(shapes) else flat[4 * i:4 * i + 4]
            out[name] = self._channels(d, name)
        return out

    def _channels(self, dims, name):
        if len(dims) != 4:
            raise UnsupportedLayerError(f"{self.path}: input {name!r} has shape {dims}; the "
                                        "exporter takes N x C x H x W image inputs")
        return dims[1]

    def _outputs(self):
        """Blobs that no later layer reads (Caffe's net outputs), in the order they were made."""
        alive = {}
        for layer in self.layers:
            for b in layer.bottoms:
                alive.pop(b, None)
            for t in layer.tops:
                alive[t] = True
        return list(alive)

    def shapes(self, height, width, batch=1):
        """{blob: (N, C, H, W)} by Caffe's shape rules for an input of height x width."""
        s = {self.input: (batch, self.channels, height, width)}
        for layer in self.layers:
            if layer.type == "Input":
                continue
            ins = [s[b] for b in layer.bottoms]
            s.update(zip(layer.tops, self._out_shapes(layer, ins)))
        return s

    def _out_shapes(self, layer, ins):
        what = f"{self.path}: layer {layer.name!r}"
        t = layer.type
        if not ins:
            raise InferenceError(f"{what} has no bottom")
        n, c, h, w = ins[0]
        if t == "Convolution":
            out = [(n, layer.num_output, *(conv_size(*a) for a in zip(
                (h, w), layer.kernel, layer.stride, layer.pad, layer.dilation)))]
        elif t == "Deconvolution":
            out = [(n, layer.num_output, *(deconv_size(*a) for a in zip(
                (h, w), layer.kernel, layer.stride, layer.pad, layer.dilation)))]
        elif t == "Pooling":
            out = [(n, c, 1, 1) if layer.global_pooling else
                   (n, c, *pooled_hw((h, w), layer.kernel, layer.stride, layer.pad,
                                     layer.ceil_mode))]
        elif t == "Eltwise":
            if any(i != ins[0] for i in ins):
                raise InferenceError(f"{what}: Eltwise of different shapes {ins}")
            out = [ins[0]]
        elif t == "Concat":
            axis = layer.axis % 4
            if any(i[:axis] + i[axis + 1:] != ins[0][:axis] + ins[0][axis + 1:] for i in ins):
                raise InferenceError(f"{what}: Concat of shapes {ins} along axis {axis}")
            out = [tuple(sum(i[axis] for i in ins) if a == axis else d
                         for a, d in enumerate(ins[0]))]
        elif t == "Split":
            out = [ins[0]] * len(layer.tops)
        else:  # element-wise: ReLU, Power, Sigmoid, TanH, Dropout
            out = [ins[0]]
        if any(d < 1 for o in out for d in o):
            raise InferenceError(f"{what}: output shape {out[0]} for input {ins[0]}; is the "
                                 "input large enough?")
        return out

    def param_shapes(self):
        """{layer: [weight shape, bias shape]} of the learnable layers, as the caffemodel
        stores them."""
        s = self.shapes(*_PROBES[0])
        out = {}
        for layer in self.layers:
            if layer.type not in ("Convolution", "Deconvolution"):
                continue
            cin = s[layer.bottoms[0]][1]
            if cin % layer.group or layer.num_output % layer.group:
                raise InferenceError(f"{self.path}: layer {layer.name!r}: group {layer.group} "
                                     f"does not divide {cin} inputs and {layer.num_output} outputs")
            w = ((layer.num_output, cin // layer.group) if layer.type == "Convolution"
                 else (cin, layer.num_output // layer.group)) + tuple(layer.kernel)
            out[layer.name] = [w] + ([(layer.num_output,)] if layer.bias_term else [])
        return out

    def stride(self, probe=256):
        """Total down-sampling of the net: the input side over the smallest blob side."""
        heights = [sh[2] for sh in self.shapes(probe, probe).values()]
        ratios = [probe // h for h in heights if h and probe % h == 0]
        return max(ratios) if ratios else 1

    def blob_bytes(self, height, width):
        """{blob: float32 bytes} for an input of height x width (Split tops share their bottom's
        memory and are left out)."""
        shared = {t for l in self.layers if l.type == "Split" for t in l.tops}
        return {b: 4 * math.prod(s) for b, s in self.shapes(height, width).items()
                if b not in shared}


class _Builder:
    """ONNX nodes for the layers, with SSA tensor names: a blob written in place (ReLU) gets a
    new tensor per write, and the last write of each blob carries the blob's own name."""

    def __init__(self, graph, weights, fixed=None):
        self.onnx = _onnx()
        self.g, self.weights, self.fixed = graph, weights, fixed
        self.nodes, self.inits = [], []
        self.tensor = {graph.input: graph.input}
        self.names = {graph.input}
        self.last_write = {}
        for i, layer in enumerate(graph.layers):
            for t in layer.tops:
                self.last_write[t] = i

    def _out_name(self, blob, i, layer):
        name = blob
        if self.last_write.get(blob) != i or blob in self.names:
            name = f"{blob}/{layer.name}"
        k = 1
        base = name
        while name in self.names:
            name, k = f"{base}_{k}", k + 1
        self.names.add(name)
        self.tensor[blob] = name
        return name

    def _init(self, name, array):
        self.inits.append(self.onnx.numpy_helper.from_array(np.asarray(array, np.float32), name))
        return name

    def _node(self, op, inputs, output, name, **attrs):
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [output], name=name, **attrs))
        return output

    def add(self, i, layer):
        t = layer.type
        if t == "Input":
            return
        ins = [self.tensor[b] for b in layer.bottoms]
        if t in _NO_NODE:
            for top in layer.tops:
                if top in self.g.outputs and self.last_write[top] == i:
                    self._node("Identity", [ins[0]], self._out_name(top, i, layer),
                               f"{layer.name}/{top}")
                else:
                    self.tensor[top] = ins[0]
            return
        out = self._out_name(layer.tops[0], i, layer)
        if t in ("Convolution", "Deconvolution"):
            params = [self._init(f"{layer.name}.{kind}", a) for kind, a in
                      zip(("weight", "bias"), self.weights[layer.name])]
            ph, pw = layer.pad
            deconv = t == "Deconvolution"
            layout = deconv and LAYOUT_CONV_AFTER_DECONV
            self._node("ConvTranspose" if deconv else "Conv", ins + params,
                       f"{out}/transposed" if layout else out, layer.name,
                       kernel_shape=list(layer.kernel), strides=list(layer.stride),
                       pads=[ph, pw, ph, pw], dilations=list(layer.dilation), group=layer.group)
            if layout:
                eye = np.eye(layer.num_output, dtype=np.float32).reshape(layer.num_output, -1, 1, 1)
                self._node("Conv", [f"{out}/transposed", self._init(f"{layer.name}.layout", eye)],
                           out, f"{layer.name}/layout", kernel_shape=[1, 1])
        elif t == "Pooling":
            if layer.global_pooling:
                self._node("GlobalMaxPool" if layer.pool == "MAX" else "GlobalAveragePool",
                           ins, out, layer.name)
            else:
                ph, pw = layer.pad
                extra = {"count_include_pad": 0} if layer.pool == "AVE" else {}
                if layer.ceil_mode and max(layer.stride) > 1:  # with stride 1 both modes agree
                    extra["ceil_mode"] = 1
                self._node("MaxPool" if layer.pool == "MAX" else "AveragePool", ins, out,
                           layer.name, kernel_shape=list(layer.kernel), strides=list(layer.stride),
                           pads=[ph, pw, ph, pw], **extra)
        elif t == "ReLU":
            if layer.negative_slope:
                self._node("LeakyRelu", ins, out, layer.name, alpha=layer.negative_slope)
            else:
                self._node("Relu", ins, out, layer.name)
        elif t == "Eltwise":
            if layer.operation == "SUM" and any(c != 1 for c in layer.coeff):
                ins = [x if c == 1 else self._node(
                    "Mul", [x, self._init(f"{layer.name}.coeff{k}", c)], f"{out}/coeff{k}",
                    f"{layer.name}/coeff{k}") for k, (x, c) in enumerate(zip(ins, layer.coeff))]
            op = {"SUM": "Add", "PROD": "Mul", "MAX": "Max"}.get(layer.operation)
            if op is None:
                raise UnsupportedLayerError(f"{self.g.path}: layer {layer.name!r}: Eltwise "
                                            f"{layer.operation} does not export")
            if op == "Add" and len(ins) > 2:
                op = "Sum"  # variadic; two bottoms stay a plain Add, which ONNX Runtime fuses
            elif op == "Mul":  # binary in ONNX: a chain for more bottoms
                acc = ins[0]
                for k, x in enumerate(ins[1:-1]):
                    acc = self._node("Mul", [acc, x], f"{out}/prod{k}", f"{layer.name}/prod{k}")
                ins = [acc, ins[-1]]
            self._node(op, ins, out, layer.name)
        elif t == "Concat":
            self._node("Concat", ins, out, layer.name, axis=layer.axis)
        elif t == "Power":
            x = ins[0]
            steps = [("Mul", "scale", layer.scale, 1.0), ("Add", "shift", layer.shift, 0.0),
                     ("Pow", "power", layer.power, 1.0)]
            todo = [s for s in steps if s[2] != s[3]] or [("Identity", None, None, None)]
            for k, (op, what, value, _) in enumerate(todo):
                dst = out if k == len(todo) - 1 else f"{out}/{what}"
                inputs = [x] if op == "Identity" else [x, self._init(f"{layer.name}.{what}", value)]
                x = self._node(op, inputs, dst,
                               layer.name if dst == out else f"{layer.name}/{what}")
        elif t == "Sigmoid":
            self._node("Sigmoid", ins, out, layer.name)
        elif t == "TanH":
            self._node("Tanh", ins, out, layer.name)

    def value_info(self, blob, name):
        """Typed, shaped graph input/output: dims that follow the input's get its names (all
        dims are numbers with a fixed size)."""
        if self.fixed:
            return self.onnx.helper.make_tensor_value_info(
                name, self.onnx.TensorProto.FLOAT, list(self.g.shapes(*self.fixed)[blob]))
        a, b = (self.g.shapes(h, w) for h, w in _PROBES)
        dims = []
        for k, (da, db) in enumerate(zip(a[blob], b[blob])):
            ia, ib = a[self.g.input][k], b[self.g.input][k]
            if k == 0 or (k >= 2 and (da, db) == (ia, ib)):
                dims.append(DIMS[0] if k == 0 else DIMS[k - 1])
            elif da == db:
                dims.append(da)
            else:
                dims.append(f"{blob}_{'nchw'[k]}")
        return self.onnx.helper.make_tensor_value_info(name, self.onnx.TensorProto.FLOAT, dims)


def build_model(deploy, weights, graph=None, fixed=None):
    """The ONNX model of a deploy prototxt with the weights of a caffemodel; H and W dynamic,
    or `fixed` = (height, width) with batch 1 for readers that need fixed dims (OpenCV dnn's
    ONNX importer, for one).

    Raises ModelNotFoundError for a missing file, UnsupportedLayerError for a layer ONNX
    cannot express here, WeightsMismatchError when the caffemodel does not fit the net and
    InferenceError for a file that is not a caffemodel.
    """
    from .weights import read_checked

    onnx = _onnx()
    graph = graph or NetGraph(deploy)
    weights = Path(weights)
    if weights.suffix.lower() == ".onnx":
        raise InferenceError(f"{weights} is already an ONNX model; export reads a .caffemodel")
    if fixed:
        stride = graph.stride()
        if any(d < 1 or d % stride for d in fixed):
            raise InferenceError(f"fixed size {fixed[1]}x{fixed[0]}: width and height must be "
                                 f"positive multiples of the net's stride {stride}")
    arrays = read_checked(weights, graph.param_shapes(), graph.path)
    b = _Builder(graph, arrays, fixed)
    for i, layer in enumerate(graph.layers):
        b.add(i, layer)
    g = onnx.helper.make_graph(
        b.nodes, get_one(graph.net.fields, "name", "net"),
        [b.value_info(graph.input, graph.input)],
        [b.value_info(o, b.tensor[o]) for o in graph.outputs], b.inits)
    model = onnx.helper.make_model(g, producer_name=PRODUCER, ir_version=IR_VERSION,
                                   opset_imports=[onnx.helper.make_opsetid("", OPSET)])
    model.doc_string = (f"{graph.path.name} with the weights of {weights.name}, exported by "
                        "`mrfnet export` (mrfnet-caffe). Input data: float32 N x "
                        f"{graph.channels} x H x W; outputs: {', '.join(graph.outputs)}.")
    onnx.helper.set_model_props(model, {
        "mrfnet.deploy": graph.path.name, "mrfnet.weights": weights.name,
        "mrfnet.weights_sha256": file_sha256(weights), "mrfnet.stride": str(graph.stride())})
    return model


def file_sha256(path):
    """Hex sha256 of a file's bytes (read in chunks: caffemodels are tens of MB)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def save_checked(model, out):
    """onnx.checker (with shape inference), then write `out` atomically (a temporary file in the
    same folder renamed into place, so a reader never sees half a model)."""
    onnx = _onnx()
    onnx.checker.check_model(model, full_check=True)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(model.SerializeToString())
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def export(deploy, weights, out, fixed=None):
    """Write the ONNX model of `deploy` + `weights` to `out` (see build_model); returns the
    path."""
    return save_checked(build_model(deploy, weights, fixed=fixed), out)


def cache_dir():
    """Exported models of the onnxruntime backend: MRFNET_CACHE/onnx (default
    ~/.cache/mrfnet-caffe/onnx, beside the Caffe builds). Safe to delete at any time."""
    root = os.environ.get("MRFNET_CACHE") or Path.home() / ".cache" / "mrfnet-caffe"
    return Path(root) / "onnx"


def cache_path(deploy, weights):
    """Where the cached export of these two files lives. The name carries a key over both
    files' contents, this exporter's source and the onnx version, so a changed caffemodel or
    prototxt (or exporter) gets a new file instead of a stale one."""
    h = hashlib.sha256(Path(__file__).read_bytes())
    h.update(_onnx().__version__.encode())
    for p in (deploy, weights):
        if not Path(p).is_file():
            raise ModelNotFoundError(f"file not found: {p}")
        h.update(file_sha256(p).encode())
    return cache_dir() / f"{Path(weights).stem}-{h.hexdigest()[:16]}.onnx"


def cached_export(deploy, weights):
    """(path, fresh) of the ONNX model for deploy + weights in the cache, exported now if it is
    not there yet (fresh=True then)."""
    path = cache_path(deploy, weights)
    if path.is_file():
        return path, False
    return export(deploy, weights, path), True


def read_checked_onnx(path, graph, with_precision=False):
    """The bytes of an .onnx file after checking that it is an ONNX model that fits the deploy
    net `graph` (input, outputs and every weight's shape); raises with a message otherwise.
    with_precision: (bytes, True for an int8 model from `mrfnet export --int8`), whose weights
    are stored as <layer>.weight_quantized / <layer>.bias_quantized, and its deconvolutions'
    as <layer>.subpixel_weight_quantized (inference.subpixel)."""
    from .subpixel import fits as subpixel_fits

    onnx = _onnx()
    path = Path(path)
    hint = (f"export one from this deploy net: mrfnet export --deploy {graph.path} "
            f"--weights WEIGHTS.caffemodel --onnx {path}")
    try:
        data = path.read_bytes()
        model = onnx.load_model_from_string(data)
        onnx.checker.check_model(model)
    except OSError as exc:
        raise ModelNotFoundError(f"cannot read ONNX model {path}: {exc}") from exc
    except Exception as exc:  # DecodeError, ValidationError, ...: all mean "not a usable model"
        raise InferenceError(f"{path}: not a valid ONNX model ({type(exc).__name__}: "
                             f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}); "
                             f"{hint}") from exc
    inits = {t.name: tuple(t.dims) for t in model.graph.initializer}
    int8 = any(n.op_type == "QuantizeLinear" for n in model.graph.node)
    if int8:
        inits.update({k[:-len("_quantized")]: v for k, v in inits.items()
                      if k.endswith("_quantized")})
    inputs = [i for i in model.graph.input if i.name not in inits]
    outputs = [o.name for o in model.graph.output]
    found = []
    if [i.name for i in inputs] != [graph.input]:
        found.append(f"inputs {[i.name for i in inputs]}, the net's is [{graph.input!r}]")
    elif any(d.HasField("dim_value") for d in inputs[0].type.tensor_type.shape.dim[2:]):
        found.append("its input has a fixed height and width (exported with --fixed-size); "
                     "images of every size need an export without it")
    found += [f"no output {o!r}" for o in graph.outputs if o not in outputs]
    missing = []
    for layer, shapes in graph.param_shapes().items():
        for kind, want in zip(("weight", "bias"), shapes):
            have = inits.get(f"{layer}.{kind}")
            sub = inits.get(f"{layer}.subpixel_{kind}")  # a deconvolution, inference.subpixel
            if have is None and sub is not None and subpixel_fits(kind, want, sub):
                continue
            if have is None:
                missing.append(f"layer {layer!r} has no {kind}")
            elif have != tuple(want):
                found.append(f"layer {layer!r} {kind}: net wants {tuple(want)}, file has {have}")
    found += missing  # the shapes that differ say more, so they come first
    if found:
        more = f" (and {len(found) - 3} more)" if len(found) > 3 else ""
        raise WeightsMismatchError(f"ONNX model {path} does not fit {graph.path}: "
                                   + "; ".join(found[:3]) + more + f"; {hint}")
    return (data, int8) if with_precision else data
