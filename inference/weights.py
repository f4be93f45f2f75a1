"""Checking that a caffemodel fits a deploy net before Caffe copies it.

Caffe's own `CopyTrainedLayersFrom` aborts the whole process (glog CHECK) when a blob shape
differs or the file is not a NetParameter, and silently keeps filler values for a layer the file
does not contain. Neither is acceptable in a tool that deblurs a batch of images, so the file is
parsed here first (protobuf, caffe_pb2; ~20 ms for MRFNet's 16 MB) and its shapes compared with
the net's parameters. Only a file that passes is handed to Caffe's fast C++ copy.
"""
from pathlib import Path

from .errors import InferenceError, ModelNotFoundError, WeightsMismatchError


def _stored_shape(blob):
    """(shape, legacy?, number of values) of a BlobProto."""
    if len(blob.shape.dim):
        shape, legacy = tuple(int(d) for d in blob.shape.dim), False
    else:  # legacy 4-D header
        shape, legacy = (blob.num, blob.channels, blob.height, blob.width), True
    return shape, legacy, len(blob.data) or len(blob.double_data)


def _parse(path):
    """{layer name: [BlobProto, ...]} of the layers with parameter blobs in a caffemodel."""
    from google.protobuf.message import DecodeError
    from caffe.proto import caffe_pb2

    path = Path(path)
    if not path.is_file():
        raise ModelNotFoundError(f"weights file not found: {path}")
    msg = caffe_pb2.NetParameter()
    try:
        msg.ParseFromString(path.read_bytes())
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise InferenceError(f"{path}: not a Caffe weights file (the caffemodel protobuf could "
                             f"not be parsed: {exc}); pass the .caffemodel written by training"
                             ) from exc
    out = {l.name: list(l.blobs) for l in list(msg.layer) + list(msg.layers) if len(l.blobs)}
    if not out:
        raise InferenceError(f"{path}: contains no weights (no layer has parameter blobs); "
                             "pass the .caffemodel written by training, not a prototxt")
    return out


def read_shapes(path):
    """{layer name: [(shape, legacy, count), ...]} of the parameter blobs in a caffemodel."""
    return {name: [_stored_shape(b) for b in blobs] for name, blobs in _parse(path).items()}


def _fits(want, stored):
    shape, legacy, count = stored
    size = 1
    for d in want:
        size *= d
    if count != size:
        return False
    if legacy:  # Caffe compares legacy headers against the shape padded to 4-D with 1s
        return len(want) <= 4 and (1,) * (4 - len(want)) + tuple(want) == shape
    return tuple(want) == shape


def problems(net_shapes, stored):
    """Human-readable misfits between {layer: [shape, ...]} of the net and a caffemodel."""
    out = []
    for name, shapes in net_shapes.items():
        if name not in stored:
            out.append(f"layer {name!r} is not in the weights file")
        elif len(stored[name]) != len(shapes):
            out.append(f"layer {name!r} has {len(shapes)} parameter blobs in the net, "
                       f"{len(stored[name])} in the weights file")
        else:
            out += [f"layer {name!r} blob {i}: net wants {tuple(w)}, file has {s[0]}"
                    for i, (w, s) in enumerate(zip(shapes, stored[name])) if not _fits(w, s)]
    return out


def check_fit(net_shapes, stored, weights_path, deploy_path):
    """Raise WeightsMismatchError naming the misfits between {layer: [shape, ...]} of the net
    and `stored` ({layer: [(shape, legacy, count), ...]} of the weights file)."""
    found = problems(net_shapes, stored)
    if found:
        more = f" (and {len(found) - 3} more)" if len(found) > 3 else ""
        raise WeightsMismatchError(
            f"weights {weights_path} do not fit {deploy_path}: " + "; ".join(found[:3]) + more
            + ". Use the caffemodel trained for this variant and number of paths.")


def read_checked(path, net_shapes, deploy_path):
    """{layer: [float32 array in the net's shape, ...]} for the layers of `net_shapes`, read
    from a caffemodel with protobuf (no Caffe net needed); raises naming any misfit."""
    import numpy as np

    blobs = _parse(path)
    check_fit(net_shapes, {k: [_stored_shape(b) for b in v] for k, v in blobs.items()},
              path, deploy_path)
    def array(blob, shape):
        values = blob.data if len(blob.data) else blob.double_data
        return np.fromiter(values, np.float32, count=len(values)).reshape(shape)

    return {name: [array(b, shape) for b, shape in zip(blobs[name], shapes)]
            for name, shapes in net_shapes.items()}


def copy_checked(net, weights_path, deploy_path):
    """Copy the caffemodel into pycaffe `net`, or raise naming the misfits (nothing copied)."""
    check_fit({k: [tuple(p.data.shape) for p in v] for k, v in net.params.items()},
              read_shapes(weights_path), weights_path, deploy_path)
    net.copy_from(str(weights_path))
