"""What stops a training session between two steps: SIGINT/SIGTERM (a clean stop with a
snapshot) and a non-finite loss (caught inside the loss layer's forward, before Caffe runs a
backward pass on it)."""
import math
import signal
import threading


class StopSignal:
    """Signal handler state: the first SIGINT/SIGTERM asks for a clean stop between steps,
    a second SIGINT aborts at once (KeyboardInterrupt)."""

    def __init__(self):
        self.signum = None
        self._old = {}

    def _handle(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def install(self):
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def restore(self):
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old = {}

    @property
    def name(self):
        """SIGINT / SIGTERM, or None when no signal came."""
        return signal.Signals(self.signum).name if self.signum is not None else None


class NonFiniteLoss(Exception):
    """Raised inside the loss layer's forward, so Caffe never runs the backward pass of a NaN
    forward (Caffe's max pooling stores index -1 for an all-NaN window and its backward then
    writes before the diff array: heap corruption)."""

    def __init__(self, value):
        super().__init__(value)
        self.value = value


def guard_loss(layer):
    """Wrap the Python loss layer's forward (on this instance only) with a finiteness check."""
    original = layer.forward

    def forward(bottom, top):
        original(bottom, top)
        value = float(top[0].data.flat[0])
        if not math.isfinite(value):
            raise NonFiniteLoss(value)

    layer.forward = forward
