"""A valid Adam solver.prototxt from a jinja2 template (templates/solver.prototxt.j2).

`solver_text(**values)` is the one entry point: the training tools call it with their schedule
(stepsize, max_iter, snapshot_prefix, ...). Keys the template does not list are appended, as long
as they are SolverParameter fields; values are quoted by the field's protobuf type, and the result
is parsed back into a SolverParameter so an invalid solver never reaches Caffe.
"""
import os
import re
from pathlib import Path

os.environ.setdefault("GLOG_minloglevel", "2")
import jinja2  # noqa: E402
from caffe.proto import caffe_pb2  # noqa: E402
from google.protobuf import text_format  # noqa: E402
from google.protobuf.descriptor import FieldDescriptor as FD  # noqa: E402

TEMPLATE = Path(__file__).with_name("templates") / "solver.prototxt.j2"

# Paper IV.A: Adam beta1 0.9, beta2 0.999, lr 1e-4 halved (step, gamma 0.5) every 10 epochs.
DEFAULTS = {
    "title": "MRFNet solver",
    "train_net": "train.prototxt",
    "test_net": None,
    "test_iter": 50,
    "test_interval": 1000,
    "test_initialization": False,
    "type": "Adam",
    "base_lr": 1e-4,
    "momentum": 0.9,
    "momentum2": 0.999,
    "delta": 1e-8,
    "weight_decay": 0.0,
    "lr_policy": "step",
    "gamma": 0.5,
    "stepsize": 10000,
    "max_iter": 50000,
    "display": 20,
    "average_loss": 20,
    "snapshot": 5000,
    "snapshot_prefix": "snapshots/deblur_mrfnet_",
    "solver_mode": "CPU",
}
_TEST_KEYS = ("test_iter", "test_interval", "test_initialization")


class SolverSpecError(ValueError):
    """A solver value that is not a SolverParameter field or does not parse."""


def _format(key, value):
    fields = caffe_pb2.SolverParameter.DESCRIPTOR.fields_by_name
    if key not in fields:
        raise SolverSpecError(f"solver: {key!r} is not a Caffe SolverParameter field")
    field = fields[key]
    values = value if isinstance(value, (list, tuple)) else [value]
    out = []
    for v in values:
        if field.type == FD.TYPE_STRING:
            text = '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
        elif field.type == FD.TYPE_BOOL:
            text = "true" if v else "false"
        elif field.type == FD.TYPE_ENUM:
            text = str(v)
        elif field.type in (FD.TYPE_FLOAT, FD.TYPE_DOUBLE):
            text = repr(float(v))
        else:
            text = str(int(v))
        out.append(f"{key}: {text}")
    return "\n".join(out)


def solver_text(**values):
    """Solver prototxt text: DEFAULTS overridden by `values` (None drops a field)."""
    vals = dict(DEFAULTS, **values)
    if not vals.get("test_net"):
        for key in _TEST_KEYS:
            vals[key] = None
    source = TEMPLATE.read_text()
    listed = set(re.findall(r'field\("(\w+)"\)', source))
    extra = [k for k in vals if k not in listed and k != "title" and vals[k] is not None]

    def field(key):
        return "" if vals.get(key) is None else _format(key, vals[key])

    env = jinja2.Environment(trim_blocks=True, keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined, autoescape=False)
    text = env.from_string(source).render(field=field, extra=extra, title=vals["title"])
    text = "\n".join(line for line in text.splitlines() if line.strip()) + "\n"
    try:
        text_format.Parse(text, caffe_pb2.SolverParameter())
    except text_format.ParseError as exc:
        raise SolverSpecError(f"solver: generated text does not parse: {exc}") from exc
    return text
