"""Exceptions of the layers package: all are ValueError subclasses so CLIs can report them as
"error: ..." with exit code 2 without knowing which module raised them."""


class LayersError(ValueError):
    """Base class: bad input to a metric, the loss, a loss-weight group or a layer's param_str."""


class MetricInputError(LayersError):
    """Images handed to a metric have the wrong dtype, shape or size."""


class LossWeightError(LayersError):
    """Per-scale loss weights are unusable (wrong count, negative, all zero, not finite)."""


class LossGroupError(LayersError):
    """A loss-weight group schedule is malformed."""


class LayerParamError(LayersError):
    """A Python layer's param_str cannot be parsed or describes an invalid configuration."""
