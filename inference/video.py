"""Deblurring a video (or a folder of frames) frame by frame into a new video, streamed.

Why it is built this way:
- Streamed: a reader thread decodes frames, the calling thread deblurs them (the same
  `tiling.deblur` as stills: padding, tiling, memory limit, optional self-ensemble) and a
  writer thread encodes them, joined by queues of QUEUE_DEPTH frames. OpenCV's decoder and
  encoder and ONNX Runtime release the GIL, so decode and encode overlap the inference, and
  memory holds a few frames whatever the clip's length.
- Atomic: each output is written under a hidden temporary name (`.NAME.partial.EXT`) and
  renamed when complete; an interrupt or an error removes it, so nothing that looks like a
  finished video is left behind.
- Checked: a file OpenCV cannot open, a video without frames and a frame size that changes
  mid-stream raise VideoError naming the file (the command lists it and goes on).
- Audio is not carried: OpenCV reads and writes pictures only.
"""
import os
import queue
import re
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import cv2

from .errors import InferenceError

QUEUE_DEPTH = 4
# --container -> (fourcc, suffix): what this OpenCV build (opencv-python-headless 4.10, its
# bundled FFmpeg) writes; H.264 ("avc1") it cannot write (no encoder in the wheel)
CONTAINERS = {"mp4": ("mp4v", ".mp4"), "avi": ("MJPG", ".avi"), "mkv": ("FFV1", ".mkv")}


class VideoError(InferenceError):
    """A video (or frame folder) cannot be read or written as asked."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during a video; `done` frames were deblurred before it."""

    def __init__(self, done=0, signal_name="Ctrl-C"):
        super().__init__(signal_name)
        self.done, self.signal_name, self.source = done, signal_name, None


@contextmanager
def sigterm_as_interrupt():
    """SIGTERM raises Interrupted in the main thread (as Ctrl-C does) while inside."""
    def handler(signum, frame):
        raise Interrupted(signal_name="SIGTERM")

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def parse_position(text, fps):
    """A frame number from '300f' (frame 300), '12.5' (seconds) or '1:02.5' ([h:]m:s)."""
    text = str(text).strip()
    if re.fullmatch(r"\d+f", text):
        return int(text[:-1])
    try:
        seconds = 0.0
        for part in text.split(":"):
            seconds = 60 * seconds + float(part)
    except ValueError:
        raise VideoError(f"{text!r} is not a time (12.5, 1:02.5) or a frame number (300f)")
    if seconds < 0:
        raise VideoError(f"{text!r}: times start at 0")
    return int(round(seconds * fps))


@dataclass(frozen=True)
class Selection:
    """Input frames start, start + every, ... before end (None: to the last frame)."""

    start: int = 0
    end: int = None
    every: int = 1

    def includes(self, n):
        return (n >= self.start and (self.end is None or n < self.end)
                and (n - self.start) % self.every == 0)

    def count(self, total):
        """How many of `total` input frames are selected (0 when total is unknown, 0)."""
        stop = total if self.end is None else min(self.end, total)
        return len(range(self.start, stop, self.every)) if total else 0


class VideoSource:
    """Frames of a video file, decoded by OpenCV (its bundled FFmpeg)."""

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.is_file():
            raise VideoError(f"{self.path}: no such video file")
        self.cap = cv2.VideoCapture(str(self.path))
        if not self.cap.isOpened():
            raise VideoError(f"{self.path}: OpenCV cannot open it as a video (corrupt, or a "
                             "codec its FFmpeg lacks); re-encode it as MP4 (H.264 or MPEG-4) "
                             "or AVI (MJPG)")
        self.fps = self.cap.get(cv2.CAP_PROP_FPS) or 0.0
        self.total = max(0, int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0))  # a header's guess
        self.size = (int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                     int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        if self.fps <= 0:
            raise VideoError(f"{self.path}: the video states no frame rate; extract its frames "
                             "and use --as-video FPS on the folder")

    def frames(self, selection):
        """(input frame number, uint8 BGR frame) of the selected frames, in order; undecoded
        frames before `start` and between picks are skipped with grab()."""
        n = 0
        try:
            while selection.end is None or n < selection.end:
                if not selection.includes(n):
                    ok = self.cap.grab()
                else:
                    ok, frame = self.cap.read()
                    if ok:
                        yield n, frame
                if not ok:
                    self._check_end(n)
                    return
                n += 1
        finally:
            self.cap.release()

    def _check_end(self, n):
        """Decoding stopped at frame n: an error if the header promised clearly more."""
        if self.total > n + max(1, self.total // 100):
            raise VideoError(f"{self.path}: decoding stopped at frame {n} of the {self.total} "
                             f"its header states (truncated or damaged); --end {n}f takes the "
                             "frames before it")


class FolderSource:
    """The sorted images of a folder as the frames of a video at `fps` (--as-video)."""

    def __init__(self, folder, fps, images):
        from data_prep.imageio import read_image

        self.path, self.fps, self.images = Path(folder), float(fps), list(images)
        self.total = len(self.images)
        self._read = read_image
        first = read_image(self.images[0]) if self.images else None
        self.size = (first.shape[1], first.shape[0]) if first is not None else (0, 0)

    def frames(self, selection):
        for n, image in enumerate(self.images):
            if selection.end is not None and n >= selection.end:
                return
            if selection.includes(n):
                yield n, self._read(image)


def checked_frames(source, selection):
    """source.frames(selection), refusing an empty selection and a frame size change."""
    first = None
    for n, frame in source.frames(selection):
        if first is None:
            first = frame.shape
        elif frame.shape != first:
            raise VideoError(f"{source.path}: frame {n} is {frame.shape[1]}x{frame.shape[0]}, "
                             f"the frames before it {first[1]}x{first[0]}; a video must keep "
                             "one frame size (split it where the size changes)")
        yield n, frame
    if first is None:
        raise VideoError(f"{source.path}: no frames to deblur" + (
            f" (--start frame {selection.start} is past its {source.total} frames)"
            if selection.start and source.total else " (the video has no frames)"))


class AtomicVideoWriter:
    """cv2.VideoWriter to a hidden temporary name, renamed to `path` by commit(), removed by
    abort(); it opens at the first frame, when the size is known."""

    def __init__(self, path, fps, container="mp4"):
        self.path = Path(path)
        self.fourcc, suffix = CONTAINERS[container]
        self.tmp = self.path.with_name(f".{self.path.stem}.partial{suffix}")
        self.fps, self.writer, self.frames = fps, None, 0

    def write(self, frame):
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            size = (frame.shape[1], frame.shape[0])
            self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*self.fourcc),
                                          self.fps, size)
            if not self.writer.isOpened():
                self.abort()
                raise VideoError(f"{self.path}: OpenCV cannot write {self.fourcc} video of "
                                 f"{size[0]}x{size[1]} at {self.fps:g} fps here")
        self.writer.write(frame)
        self.frames += 1

    def commit(self):
        self.writer.release()
        os.replace(self.tmp, self.path)

    def abort(self):
        if self.writer is not None:
            self.writer.release()
        self.tmp.unlink(missing_ok=True)


_END = object()


class _Failed:
    def __init__(self, exc):
        self.exc = exc


def _put(q, item, stop):
    """Put unless `stop` is set first; False if it was."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            pass
    return False


def _get(q, stop):
    """The next item, or None once `stop` is set."""
    while not stop.is_set():
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            pass
    return None


def pipeline(items, work, consume, depth=QUEUE_DEPTH):
    """consume(work(item)) for every item of the iterable `items`, in order: `items` is
    iterated in a reader thread, `consume` runs in a writer thread, `work` in this one.
    An exception in any of the three stops all and is raised here (Ctrl-C too)."""
    stop, errors = threading.Event(), []
    q_in, q_out = queue.Queue(depth), queue.Queue(depth)

    def reader():
        try:
            for item in items:
                if not _put(q_in, item, stop):
                    return
            _put(q_in, _END, stop)
        except BaseException as exc:  # handed to the main thread
            _put(q_in, _Failed(exc), stop)

    def writer():
        try:
            while (item := _get(q_out, stop)) not in (None, _END):
                consume(item)
        except BaseException as exc:
            errors.append(exc)
            stop.set()

    threads = [threading.Thread(target=f, daemon=True) for f in (reader, writer)]
    for t in threads:
        t.start()
    try:
        while (item := _get(q_in, stop)) is not _END:
            if item is None:
                raise errors[0]
            if isinstance(item, _Failed):
                raise item.exc
            if not _put(q_out, work(item), stop):
                raise errors[0]
        _put(q_out, _END, stop)
        threads[1].join()
        if errors:
            raise errors[0]
    finally:
        stop.set()
        for t in threads:
            t.join()


@dataclass
class VideoJob:
    """What to do with one video: where, which frames, which extra outputs."""

    out: Path                       # the deblurred video
    selection: Selection = field(default_factory=Selection)
    container: str = "mp4"
    side_by_side: Path = None       # the labelled blurred | deblurred video, if wanted
    stills: dict = field(default_factory=dict)   # input frame number -> PNG path
    still_sbs: dict = field(default_factory=dict)  # input frame number -> side-by-side PNG
    captions: tuple = ("blurred", "deblurred")


def deblur_video(source, job, deblur_frame, on_frame=None):
    """Deblur the selected frames of `source` into job.out (and its extra outputs).

    `deblur_frame(uint8 BGR) -> uint8 BGR`; `on_frame(frames done)` after each frame.
    Returns the number of frames written. Raises Interrupted (with the count) on Ctrl-C or
    SIGTERM and VideoError for bad input; either way no output video is left behind.
    """
    from data_prep.imageio import write_image

    from .compose import side_by_side

    fps = source.fps / job.selection.every
    writers = [AtomicVideoWriter(job.out, fps, job.container)]
    if job.side_by_side:
        writers.append(AtomicVideoWriter(job.side_by_side, fps, job.container))
    done = [0]

    def work(item):
        n, frame = item
        out = deblur_frame(frame)
        done[0] += 1
        if on_frame:
            on_frame(done[0])
        return n, frame, out

    def consume(item):
        n, frame, out = item
        writers[0].write(out)
        sbs = (side_by_side([frame, out], job.captions)
               if job.side_by_side or n in job.still_sbs else None)
        if job.side_by_side:
            writers[1].write(sbs)
        if n in job.stills:
            write_image(job.stills[n], out)
        if n in job.still_sbs:
            write_image(job.still_sbs[n], sbs)

    try:
        with sigterm_as_interrupt():
            pipeline(checked_frames(source, job.selection), work, consume)
    except KeyboardInterrupt as exc:
        for w in writers:
            w.abort()
        raise Interrupted(done[0], getattr(exc, "signal_name", "Ctrl-C")) from None
    except BaseException:
        for w in writers:
            w.abort()
        raise
    for w in writers:
        w.commit()
    return writers[0].frames
