"""What we need to know about a deploy prototxt before handing it to Caffe or OpenCV.

Read with mrfnet.netfile's protobuf text-format parser (no Caffe import), because
- the OpenCV backend must work where Caffe is not installed, and
- Caffe aborts the whole process (glog CHECK) on a file it cannot parse, while we want a clear
  message and the other images still processed.

A prototxt can name a Python layer (`type: "Python"`, `python_param { module: ... }`): Caffe then
imports and runs that module. Deploy nets here are stock layers only, so such a file is refused
unless the caller allows it explicitly.
"""
import re
from pathlib import Path

from mrfnet.netfile import NetFileError, Quoted, get_all, get_one, parse_text, to_text

from .errors import InferenceError, ModelNotFoundError, UnsafeNetError

class DeployNet:
    """The parts of a deploy prototxt that inference relies on."""

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelNotFoundError(f"deploy prototxt not found: {self.path}")
        try:
            text = self.path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise InferenceError(f"{self.path}: cannot read deploy prototxt ({exc})") from exc
        try:
            self.fields = parse_text(text, self.path)
        except NetFileError as exc:
            raise InferenceError(str(exc)) from None
        self.layers = [dict(name=get_one(l, "name", "?"), type=get_one(l, "type", "?"),
                            bottoms=get_all(l, "bottom"), tops=get_all(l, "top"), fields=l)
                       for l in get_all(self.fields, "layer") + get_all(self.fields, "layers")]
        if not self.layers:
            raise InferenceError(f"{self.path}: no layers found; is this a Caffe prototxt?")

    @property
    def python_layers(self):
        """Names of layers that would make Caffe import Python code (V2 and V1 spellings)."""
        return [l["name"] for l in self.layers
                if l["type"] in ("Python", "PYTHON") or get_one(l["fields"], "python_param")]

    def check_safe(self, allow_python_layers=False):
        names = self.python_layers
        if names and not allow_python_layers:
            raise UnsafeNetError(
                f"{self.path}: layer(s) {', '.join(names)} are Python layers, which run code "
                "named in the file; deploy nets must use stock Caffe layers. Use the generated "
                "models/<variant>/deploy.prototxt, or pass --allow-python-layers if you trust it.")

    def check_graph(self):
        """Every bottom must be made by an earlier layer (Caffe aborts the process otherwise)."""
        made = set(get_all(self.fields, "input"))
        for layer in self.layers:
            for b in layer["bottoms"]:
                if b not in made:
                    raise InferenceError(f"{self.path}: layer {layer['name']!r} reads blob {b!r} "
                                         "that no earlier layer produces; the prototxt is broken")
            made.update(layer["tops"])

    def check_types(self, known):
        """Every layer type must be one the runtime knows (Caffe aborts the process otherwise)."""
        unknown = sorted({l["type"] for l in self.layers} - set(known))
        if unknown:
            raise InferenceError(f"{self.path}: layer type(s) {', '.join(unknown)} are not in this "
                                 "Caffe build; use a deploy net made by `mrfnet prototxt`")

    @property
    def tops(self):
        return {t for l in self.layers for t in l["tops"]}

    def check_blobs(self, input_blob, output_blob):
        has_input = input_blob in self.tops or input_blob in get_all(self.fields, "input")
        if not has_input:
            raise InferenceError(f"{self.path}: no input blob named {input_blob!r} "
                                 "(deploy nets take 'data': N x 3 x H x W, BGR in [0,1])")
        if output_blob not in self.tops:
            raise InferenceError(f"{self.path}: no output blob named {output_blob!r}; "
                                 "is this a deploy prototxt made by `mrfnet prototxt`?")

    def without_split_layers(self, output_blob):
        """(prototxt text, blob to read) with explicit Split layers removed.

        A Split only shares its bottom's data under several names; consumers can read the bottom
        directly. OpenCV's Caffe importer mishandles explicit Split layers with several tops
        (OpenCV 4.10: "out_port < out.size()" in getLayerShapesRecursively), so the OpenCV
        backend reads this equivalent text. `output_blob` is renamed to the Split's bottom when
        it is a Split top.
        """
        alias = {}
        for layer in self.layers:
            if layer["type"] == "Split" and len(layer["bottoms"]) == 1:
                src = layer["bottoms"][0]
                for t in layer["tops"]:
                    alias[t] = alias.get(src, src)

        def resolve(b):
            while b in alias:
                b = alias[b]
            return b

        kept = []
        for key, value in self.fields:
            if key == "layer" and isinstance(value, list):
                if get_one(value, "type") == "Split" and len(get_all(value, "bottom")) == 1:
                    continue
                value = [(k, Quoted(resolve(v)) if k == "bottom" else v) for k, v in value]
            kept.append((key, value))
        return to_text(kept) + "\n", resolve(output_blob)

    def lifetimes(self, keep=()):
        """{blob: (index of the layer that makes it, index of the last layer that reads it)}.

        Net inputs are made at -1. Split tops and in-place tops are the blob they share memory
        with. Blobs that nothing reads, and those named in `keep`, live to the last layer.
        """
        alias, born, last = {}, {b: -1 for b in get_all(self.fields, "input")}, {}

        def resolve(b):
            while b in alias:
                b = alias[b]
            return b

        for i, layer in enumerate(self.layers):
            for b in map(resolve, layer["bottoms"]):
                last[b] = i
            if layer["type"] == "Split" and len(layer["bottoms"]) == 1:
                alias.update({t: resolve(layer["bottoms"][0]) for t in layer["tops"]})
                continue
            for t in layer["tops"]:
                born.setdefault(t, i)
        end = len(self.layers) - 1
        kept = {resolve(b) for b in keep}
        return {b: (first, end if b in kept or b not in last else last[b])
                for b, first in born.items()}

    @property
    def num_paths(self):
        """P from the per-path prediction blobs pred_r1..pred_rP, or None."""
        ks = [int(m.group(1)) for t in self.tops for m in [re.fullmatch(r"pred_r(\d+)", t)] if m]
        return max(ks) if ks else None

    @property
    def stride_from_names(self):
        """Total stride 2^(P-1) as documented by prototxt_gen, or None if the names are absent."""
        p = self.num_paths
        return 2 ** (p - 1) if p else None
