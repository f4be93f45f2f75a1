"""Project exceptions for inference and evaluation.

They subclass ValueError / FileNotFoundError (as the team contract asks) so callers can catch the
usual Python types, and the CLIs turn any of them into one "error: ..." line and exit code 2.
Every message names the file or option at fault and says what to do about it.
"""


class InferenceError(ValueError):
    """A deploy net, weights file or image cannot be used as given."""


class UnsafeNetError(InferenceError):
    """A prototxt asks Caffe to import and run Python code named inside the file."""


class WeightsMismatchError(InferenceError):
    """A caffemodel does not fit the deploy prototxt (missing layers or other shapes)."""


class UnsupportedLayerError(InferenceError):
    """A prototxt has layers that the ONNX exporter cannot express (Python layers among them)."""


class ModelNotFoundError(FileNotFoundError):
    """A deploy prototxt or caffemodel is missing."""
