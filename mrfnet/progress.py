"""The project's one progress display: count, rate and ETA on stderr (no dependency).

On a terminal the line is redrawn in place; when the stream is a file or pipe (CI, nohup, a
parent process reading it) a full line is printed at most every `min_interval_pipe` seconds, and
always for the last step, so logs stay readable and a supervisor can still see it move.
Used by the data converter (patches), the trainer (iterations) and `mrfnet deblur` (images).
"""
import sys
import time


def format_seconds(s):
    """'1:02:03' / '4:05' for a duration in seconds; '?' when unknown."""
    if s is None or s != s or s == float("inf"):
        return "?"
    s = int(round(max(0, s)))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


class ProgressBar:
    """update(count, **fields) after each step (count = steps done so far); close() at the end.

    `label` and `unit` name the work ("convert train", "patches"); `start` is the count this
    process started from (a resumed run), so the rate is this session's own.
    """

    def __init__(self, total, start=0, stream=None, label="", unit="", width=24,
                 min_interval=0.2, min_interval_pipe=10.0):
        self.total = max(1, int(total))
        self.start_count = self.count = int(start)
        self.stream = stream if stream is not None else sys.stderr
        self.label, self.unit, self.width = label, unit, width
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.min_interval = min_interval if self.tty else min_interval_pipe
        self.t0 = time.monotonic()
        self._last_draw = -1e9
        self._drawn = False

    def rate(self, count=None):
        """Steps per second since this bar (this process) started."""
        done = (self.count if count is None else count) - self.start_count
        dt = time.monotonic() - self.t0
        return done / dt if done > 0 and dt > 0 else 0.0

    def line(self, count, **fields):
        frac = min(1.0, count / self.total)
        filled = int(round(frac * self.width))
        r = self.rate(count)
        eta = (self.total - count) / r if r > 0 else None
        extra = " ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                         for k, v in fields.items() if v is not None)
        head = f"{self.label}: " if self.label else ""
        unit = f" {self.unit}" if self.unit else ""
        return (f"{head}{count}/{self.total}{unit} [{'#' * filled}{'.' * (self.width - filled)}] "
                f"{100 * frac:3.0f}% {r:.2f} {self.unit or 'it'}/s ETA {format_seconds(eta)} "
                f"{extra}").rstrip()

    def update(self, count, force=False, **fields):
        self.count = count
        now = time.monotonic()
        if not force and now - self._last_draw < self.min_interval and count < self.total:
            return
        self._last_draw = now
        text = self.line(count, **fields)
        self.stream.write(("\r\x1b[2K" + text) if self.tty else (text + "\n"))
        self.stream.flush()
        self._drawn = True

    def message(self, text):
        """Print a line without breaking the bar."""
        if self.tty and self._drawn:
            self.stream.write("\r\x1b[2K")
        self.stream.write(text + "\n")
        self.stream.flush()
        self._last_draw = -1e9

    def close(self, summary=False):
        """End the bar; with `summary`, print 'label: done, N unit in S s (R unit/s)'."""
        if self.tty and self._drawn:
            self.stream.write("\n")
        if summary:
            elapsed = time.monotonic() - self.t0
            self.stream.write(f"{self.label}: done, {self.count} {self.unit} in {elapsed:.1f} s "
                              f"({self.rate():.1f} {self.unit}/s)\n")
        self.stream.flush()
        self._drawn = False
