"""A one-line progress bar on stderr: iterations, it/s, ETA and the last loss.

On a terminal the line is redrawn in place; when stderr is a file or pipe (CI, nohup) a full line
is printed at most every `min_interval_pipe` seconds so logs stay readable.
"""
import sys
import time


def format_seconds(s):
    """'1:02:03' / '4:05' for a duration in seconds; '?' when unknown."""
    if s is None or s != s or s == float("inf"):
        return "?"
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


class ProgressBar:
    """Call update(iteration, **fields) after each step; close() at the end."""

    def __init__(self, total, start=0, stream=None, width=24, min_interval=0.2,
                 min_interval_pipe=10.0):
        self.total = max(1, int(total))
        self.start_iter = int(start)
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.min_interval = min_interval if self.tty else min_interval_pipe
        self.t0 = time.monotonic()
        self._last_draw = -1e9
        self._drawn = False

    def rate(self, iteration):
        """Iterations per second since this bar (this process) started."""
        done = iteration - self.start_iter
        dt = time.monotonic() - self.t0
        return done / dt if done > 0 and dt > 0 else 0.0

    def line(self, iteration, **fields):
        frac = min(1.0, iteration / self.total)
        filled = int(round(frac * self.width))
        r = self.rate(iteration)
        eta = (self.total - iteration) / r if r > 0 else None
        extra = " ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                         for k, v in fields.items() if v is not None)
        return (f"[{'#' * filled}{'.' * (self.width - filled)}] {iteration}/{self.total} "
                f"{100 * frac:3.0f}% {r:.2f} it/s ETA {format_seconds(eta)} {extra}").rstrip()

    def update(self, iteration, force=False, **fields):
        now = time.monotonic()
        if not force and now - self._last_draw < self.min_interval and iteration < self.total:
            return
        self._last_draw = now
        text = self.line(iteration, **fields)
        if self.tty:
            self.stream.write("\r\x1b[2K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        self._drawn = True

    def message(self, text):
        """Print a line without breaking the bar."""
        if self.tty and self._drawn:
            self.stream.write("\r\x1b[2K")
        self.stream.write(text + "\n")
        self.stream.flush()
        self._last_draw = -1e9

    def close(self):
        if self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
        self._drawn = False
