"""Turn a NetParameter into a live caffe.Net (pycaffe only reads nets from files)."""
import os
import tempfile

import caffe

from .nets import to_text


def load(net_param, phase="test"):
    """caffe.Net for `net_param` in phase "train" or "test" (random weights from the fillers)."""
    fd, path = tempfile.mkstemp(suffix=".prototxt", prefix="mrfnet_")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(to_text(net_param))
        return caffe.Net(path, caffe.TRAIN if phase == "train" else caffe.TEST)
    finally:
        os.unlink(path)
