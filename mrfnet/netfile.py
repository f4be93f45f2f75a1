"""Caffe net files (prototxt), read with or without Caffe's protobuf, as normalised layer specs.

Why one module: the OpenCV backend must read a deploy net where Caffe is not built, so prototxt
text is parsed here by a small protobuf text-format parser (`parse_text`, no Caffe import);
`mrfnet train --workers`, prototxt_gen and the tools edit nets as caffe_pb2 messages
(`parse_message`, `read_message`, `message_text`: the functions that import Caffe). Both routes
give the same tree of (field, value) pairs (`message_fields` turns a message into it), and
`layer_spec` turns a layer's tree into a LayerSpec with Caffe's defaults filled in, which the
ONNX exporter, the OpenCV and pycaffe backends and tools/compare_pytorch.py read. Caffe's
output-size rules (`pooled_size`, `conv_size`, `deconv_size`) are written here once.

A leaf: it imports nothing of the project, so every package (and a Python without Caffe) can
use it.
"""
import re
import struct
from pathlib import Path

_TOKEN = re.compile(r"""
    (?P<ws>\s+|\#[^\n]*)
  | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<punct>[{}:<>;,\[\]])
  | (?P<word>[^\s{}:<>;,\[\]"'#]+)
""", re.VERBOSE)


class NetFileError(ValueError):
    """A prototxt that cannot be parsed, or a layer setting Caffe would refuse."""


class UnsupportedNetError(NetFileError):
    """A valid net this module does not describe (more than two spatial dims)."""


class Quoted(str):
    """A string field value (written back with quotes; enums and numbers are plain str)."""


# --------------------------------------------------------------------------- text format
def _tokens(text, path):
    pos = 0
    out = []
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise NetFileError(f"{path}: cannot parse prototxt near {text[pos:pos + 30]!r}")
        pos = m.end()
        kind = m.lastgroup
        if kind == "ws":
            continue
        tok = m.group(kind)
        if kind == "str":
            tok = ("str", bytes(tok[1:-1], "utf-8").decode("unicode_escape"))
        out.append((kind, tok))
    return out


def parse_text(text, path="<prototxt>"):
    """Protobuf text format -> nested list of (field, value); value is a str or such a list."""
    toks = _tokens(text, path)
    i = 0

    def message(closing):
        nonlocal i
        fields = []
        while i < len(toks):
            kind, tok = toks[i]
            if kind == "punct" and tok in ("}", ">"):
                if closing is None:
                    raise NetFileError(f"{path}: unbalanced '{tok}' in prototxt")
                i += 1
                return fields
            if kind != "word":
                raise NetFileError(f"{path}: expected a field name, found {tok!r}")
            name = tok
            i += 1
            if i < len(toks) and toks[i] == ("punct", ":"):
                i += 1
            if i >= len(toks):
                raise NetFileError(f"{path}: field {name!r} has no value")
            kind, tok = toks[i]
            if kind == "punct" and tok in ("{", "<"):
                i += 1
                fields.append((name, message(tok)))
            elif kind == "str":
                # adjacent string literals concatenate, as in protobuf
                value = tok[1]
                i += 1
                while i < len(toks) and toks[i][0] == "str":
                    value += toks[i][1][1]
                    i += 1
                fields.append((name, Quoted(value)))
            elif kind == "word":
                fields.append((name, tok))
                i += 1
            else:
                raise NetFileError(f"{path}: unexpected {tok!r} after field {name!r}")
            if i < len(toks) and toks[i] in (("punct", ";"), ("punct", ",")):
                i += 1
        if closing is not None:
            raise NetFileError(f"{path}: a '{closing}' block is not closed")
        return fields

    return message(None)


def to_text(fields, indent=0):
    """Nested (field, value) list back to protobuf text format."""
    pad = "  " * indent
    lines = []
    for name, value in fields:
        if isinstance(value, list):
            lines += [f"{pad}{name} {{", to_text(value, indent + 1), f"{pad}}}"]
        elif isinstance(value, Quoted):
            esc = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
            lines.append(f'{pad}{name}: "{esc}"')
        else:
            lines.append(f"{pad}{name}: {value}")
    return "\n".join(l for l in lines if l)


def get_all(fields, name):
    return [v for k, v in fields if k == name]


def get_one(fields, name, default=None):
    values = get_all(fields, name)
    return values[0] if values else default


# --------------------------------------------------------------------------- caffe_pb2 route
def parse_message(text, merge=False):
    """Prototxt text -> caffe_pb2.NetParameter (Caffe's own parser; imports Caffe)."""
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    return (text_format.Merge if merge else text_format.Parse)(text, caffe_pb2.NetParameter())


def read_message(path):
    """A prototxt file as a caffe_pb2.NetParameter (merged, as Caffe's ReadProtoFromTextFile)."""
    return parse_message(Path(path).read_text(), merge=True)


def message_text(message, header=()):
    """Prototxt text of a protobuf message with '#' header lines (deterministic)."""
    from google.protobuf import text_format
    return "".join(f"# {h}\n" for h in header) + text_format.MessageToString(message)


def message_fields(message):
    """A protobuf message as the (field, value) tree of parse_text: enums by name, bools as
    true/false, strings Quoted, numbers as text."""
    out = []
    for fd, value in message.ListFields():
        for v in (value if fd.label == fd.LABEL_REPEATED else [value]):
            if fd.message_type is not None:
                out.append((fd.name, message_fields(v)))
            elif fd.enum_type is not None:
                out.append((fd.name, fd.enum_type.values_by_number[v].name))
            elif isinstance(v, bool):
                out.append((fd.name, "true" if v else "false"))
            elif isinstance(v, str):
                out.append((fd.name, Quoted(v)))
            else:
                out.append((fd.name, repr(v)))
    return out


# --------------------------------------------------------------------------- layer specs
def _f32(text):
    """A float field as Caffe holds it (single precision), so both routes give equal values."""
    return struct.unpack("f", struct.pack("f", float(text)))[0]


def _bool(text):
    return str(text) == "true"


def _pair(param, name, default, what, prefix=None):
    """(h, w) of a spatial setting: `name` once (both) or twice (h, w), or prefix_h/prefix_w
    (kernel_size has kernel_h/kernel_w)."""
    prefix = prefix or name
    h, w = get_one(param, f"{prefix}_h"), get_one(param, f"{prefix}_w")
    if h is not None or w is not None:
        return int(h if h is not None else default), int(w if w is not None else default)
    vals = [int(v) for v in get_all(param, name)]
    if not vals:
        if default is None:
            raise NetFileError(f"{what}: no {name} (or {prefix}_h/{prefix}_w)")
        return default, default
    if len(vals) <= 2:
        return vals[0], vals[-1]
    raise UnsupportedNetError(f"{what}: {len(vals)} values of {name}; only 2-D nets are read here")


class LayerSpec:
    """One layer with Caffe's defaults filled in. Every layer has name, type, bottoms, tops,
    loss_weight (Caffe's 1 on the first top of a *Loss layer when none is given), params
    ({name, lr_mult, decay_mult} per ParamSpec), propagate_down, include and exclude (the
    phases of the rules, None for a rule without one); the types below add their settings."""

    def __init__(self, **values):
        self.__dict__.update(values)

    def __eq__(self, other):
        return isinstance(other, LayerSpec) and vars(self) == vars(other)

    def __repr__(self):
        return f"LayerSpec({vars(self)!r})"

    def as_dict(self):
        return dict(vars(self))

    def in_phase(self, phase):
        """Caffe's include/exclude rules for `phase` (see in_phase)."""
        return _allowed(self.include, self.exclude, phase)


def _allowed(include, exclude, phase):
    if include and not any(p in (None, phase) for p in include):
        return False
    return phase not in exclude


def in_phase(fields, phase):
    """Whether Caffe builds the layer of this (field, value) tree in `phase` ("TRAIN" or
    "TEST"): its include/exclude rules by phase (levels and stages are not used here)."""
    return _allowed([get_one(r, "phase") for r in get_all(fields, "include")],
                    [get_one(r, "phase") for r in get_all(fields, "exclude")], phase)


def layer_spec(fields, path="<prototxt>"):
    """The LayerSpec of one layer's (field, value) tree."""
    name, kind = get_one(fields, "name", "?"), get_one(fields, "type", "?")
    bottoms, tops = get_all(fields, "bottom"), get_all(fields, "top")
    loss = [_f32(v) for v in get_all(fields, "loss_weight")]
    if not loss and kind.endswith("Loss") and tops:
        loss = [1.0]
    s = LayerSpec(
        name=str(name), type=str(kind), bottoms=[str(b) for b in bottoms],
        tops=[str(t) for t in tops], loss_weight=loss,
        params=[{"name": str(get_one(p, "name", "")), "lr_mult": _f32(get_one(p, "lr_mult", 1)),
                 "decay_mult": _f32(get_one(p, "decay_mult", 1))} for p in get_all(fields, "param")],
        propagate_down=[_bool(v) for v in get_all(fields, "propagate_down")],
        include=[get_one(r, "phase") for r in get_all(fields, "include")],
        exclude=[get_one(r, "phase") for r in get_all(fields, "exclude")])
    what = f"{path}: layer {s.name!r} ({s.type})"
    _TYPES.get(s.type, lambda s, f, w: None)(s, fields, what)
    return s


def layer_specs(net_fields, path="<prototxt>"):
    """LayerSpecs of every `layer` of a net's (field, value) tree, in file order."""
    return [layer_spec(l, path) for l in get_all(net_fields, "layer")]


def read_specs(path, with_caffe_pb2=False):
    """LayerSpecs of a prototxt file, parsed here or (with_caffe_pb2) by Caffe's protobuf."""
    if with_caffe_pb2:
        return layer_specs(message_fields(read_message(path)), path)
    return layer_specs(parse_text(Path(path).read_text(), path), path)


def _conv(s, f, what):
    cp = get_one(f, "convolution_param", [])
    s.num_output = int(get_one(cp, "num_output", 0))
    s.kernel = _pair(cp, "kernel_size", None, what, prefix="kernel")
    s.stride = _pair(cp, "stride", 1, what)
    s.pad = _pair(cp, "pad", 0, what)
    s.dilation = _pair(cp, "dilation", 1, what)
    s.group = int(get_one(cp, "group", 1))
    s.bias_term = _bool(get_one(cp, "bias_term", "true"))
    s.axis = int(get_one(cp, "axis", 1))


def _pool(s, f, what):
    pp = get_one(f, "pooling_param", [])
    s.pool = str(get_one(pp, "pool", "MAX"))
    s.global_pooling = _bool(get_one(pp, "global_pooling", "false"))
    s.kernel = (None if s.global_pooling
                else _pair(pp, "kernel_size", None, what, prefix="kernel"))
    s.stride = _pair(pp, "stride", 1, what)
    s.pad = _pair(pp, "pad", 0, what)
    # this Caffe: ceil_mode (default true); upstream BVLC: round_mode CEIL / FLOOR
    s.ceil_mode = _bool(get_one(pp, "ceil_mode", "true")) and get_one(pp, "round_mode") != "FLOOR"


def _relu(s, f, what):
    s.negative_slope = _f32(get_one(get_one(f, "relu_param", []), "negative_slope", 0))


def _eltwise(s, f, what):
    ep = get_one(f, "eltwise_param", [])
    s.operation = str(get_one(ep, "operation", "SUM"))
    s.coeff = [_f32(v) for v in get_all(ep, "coeff")]


def _concat(s, f, what):
    cp = get_one(f, "concat_param", [])
    s.axis = int(get_one(cp, "concat_dim", get_one(cp, "axis", 1)))


def _slice(s, f, what):
    sp = get_one(f, "slice_param", [])
    s.axis = int(get_one(sp, "slice_dim", get_one(sp, "axis", 1)))
    s.slice_point = [int(v) for v in get_all(sp, "slice_point")]


def _power(s, f, what):
    pp = get_one(f, "power_param", [])
    s.power, s.scale, s.shift = (_f32(get_one(pp, k, d)) for k, d in
                                 (("power", 1), ("scale", 1), ("shift", 0)))


def _scale(s, f, what):
    sp = get_one(f, "scale_param", [])
    s.axis = int(get_one(sp, "axis", 1))
    s.num_axes = int(get_one(sp, "num_axes", 1))
    s.bias_term = _bool(get_one(sp, "bias_term", "false"))


def _input(s, f, what):
    s.shapes = [[int(d) for d in get_all(sh, "dim")]
                for sh in get_all(get_one(f, "input_param", []), "shape")]


_TYPES = {"Convolution": _conv, "Deconvolution": _conv, "Pooling": _pool, "ReLU": _relu,
          "Eltwise": _eltwise, "Concat": _concat, "Slice": _slice, "Power": _power,
          "Scale": _scale, "Input": _input}


# --------------------------------------------------------------------------- output sizes
def pooled_size(size, kernel, stride, pad, ceil_mode=True, padded=None):
    """Caffe's pooled size along one axis: rounded up (down without ceil_mode), and when the
    layer pads at all (`padded`, default pad != 0; Caffe checks both axes once either pads) the
    last window must start inside the image or its top/left padding."""
    span = size + 2 * pad - kernel
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if (pad if padded is None else padded) and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def pooled_hw(hw, kernel, stride, pad, ceil_mode=True):
    """(height, width) of a Pooling layer's output for an input of hw = (height, width)."""
    return tuple(pooled_size(n, k, s, p, ceil_mode, any(pad))
                 for n, k, s, p in zip(hw, kernel, stride, pad))


def conv_size(size, kernel, stride, pad, dilation=1):
    """Caffe's convolution output size (rounded down)."""
    return (size + 2 * pad - (dilation * (kernel - 1) + 1)) // stride + 1


def deconv_size(size, kernel, stride, pad, dilation=1):
    """Caffe's deconvolution output size (the convolution's inverse)."""
    return stride * (size - 1) + dilation * (kernel - 1) + 1 - 2 * pad
