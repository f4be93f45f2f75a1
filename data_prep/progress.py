"""A plain-stderr progress line with count, rate and ETA (no dependency).

On a terminal the line is redrawn in place; otherwise (logs, pipes, tests) a full line is printed
at most every `interval` seconds, plus the first and the last one, so a supervisor can see it move.
"""
import sys
import time


def _hms(seconds):
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    def __init__(self, total, label="progress", unit="patches", stream=None, interval=None):
        self.total, self.label, self.unit = int(total), label, unit
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval if interval is not None else (0.2 if self.tty else 1.0)
        self.count = 0
        self.start = time.monotonic()
        self._last = None

    def rate(self):
        elapsed = time.monotonic() - self.start
        return self.count / elapsed if elapsed > 0 else 0.0

    def line(self):
        rate = self.rate()
        eta = (self.total - self.count) / rate if rate > 0 else float("nan")
        pct = 100.0 * self.count / self.total if self.total else 100.0
        eta_text = _hms(eta) if eta == eta else "?"
        return (f"{self.label}: {self.count}/{self.total} {self.unit} ({pct:.0f}%) "
                f"{rate:.1f} {self.unit}/s ETA {eta_text}")

    def update(self, n=1):
        self.count += n
        now = time.monotonic()
        if self._last is None or now - self._last >= self.interval or self.count >= self.total:
            self._emit()
            self._last = now

    def _emit(self, final=False):
        if self.tty:
            self.stream.write("\r" + self.line() + ("\n" if final else ""))
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def close(self):
        elapsed = time.monotonic() - self.start
        if self.tty:
            self._emit(final=True)
        self.stream.write(f"{self.label}: done, {self.count} {self.unit} in {elapsed:.1f} s "
                          f"({self.rate():.1f} {self.unit}/s)\n")
        self.stream.flush()
