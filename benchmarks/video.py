"""`make bench` rows for video: the streamed video path's frames/s against pure inference of
the same frames, and the x8 self-ensemble's time factor (run in a fresh benchmarks.worker process).

Why: decode and encode run in their own threads beside the inference (inference.video); the
target is video throughput >= 0.95 of the pure inference throughput, i.e. decode and encode
hidden. The clip is made here from a bundled photo (content does not change the time).
"""
import tempfile
import time
from pathlib import Path

import numpy as np

# (WIDTHxHEIGHT, frames) timed by `make bench`; --quick keeps the first
VIDEO_SIZES = (("640x360", 24), ("1280x720", 12))
TARGET = 0.95


def make_clip(path, width, height, frames, fps=25.0):
    """An MPEG-4 ('mp4v') clip panning across the bundled 'coffee' photo, `frames` long."""
    import cv2

    from data_prep import bundled

    photo = cv2.resize(np.asarray(bundled.load("coffee")), (width + 4 * frames, height + 2 * frames))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for i in range(frames):
        writer.write(np.ascontiguousarray(photo[2 * i:2 * i + height, 4 * i:4 * i + width]))
    writer.release()
    return path


def time_video(backend, deploy, weights, width, height, frames, ensemble_frames=1,
               ort_options=None):
    """Seconds for `frames` frames: pure inference (frames decoded beforehand, deblurred one by
    one) and `mrfnet deblur`'s video path (decode, deblur, encode to mp4), and the ensemble's
    time over the plain one on `ensemble_frames` frames."""
    from inference.backends import load
    from inference.tiling import deblur
    from inference.video import Selection, VideoJob, VideoSource, deblur_video

    net = load(str(deploy), str(weights), backend, **(ort_options or {}))
    with tempfile.TemporaryDirectory(prefix="mrfnet-bench-video-") as d:
        clip = make_clip(Path(d) / "clip.mp4", width, height, frames)
        decoded = [f for _, f in VideoSource(clip).frames(Selection())]
        deblur(net, decoded[0], ensemble=True)  # warm-up, both orientations
        t0 = time.perf_counter()
        for f in decoded:
            deblur(net, f)
        pure_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        written = deblur_video(VideoSource(clip), VideoJob(out=Path(d) / "out.mp4"),
                               lambda f: deblur(net, f)[0])
        video_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for f in decoded[:ensemble_frames]:
            deblur(net, f, ensemble=True)
        ensemble_s = (time.perf_counter() - t0) / ensemble_frames
    plain_s = pure_s / len(decoded)
    return {"frames": written, "pure_s": pure_s, "video_s": video_s,
            "pure_fps": len(decoded) / pure_s, "video_fps": written / video_s,
            "video_vs_pure": pure_s / video_s, "ensemble_s": ensemble_s, "plain_s": plain_s,
            "ensemble_factor": ensemble_s / plain_s}


def markdown(rows):
    """The benchmark report's video section (empty without rows)."""
    if not rows:
        return []
    lines = ["## Video: `mrfnet deblur clip.mp4` vs pure inference (MRFNet, default backend)", "",
             "Pure inference = the same decoded frames deblurred one after another; video = "
             "decode, deblur and encode (mp4v) in `inference/video.py`'s three threads. Target: "
             f"video frames/s >= {TARGET:.2f} x pure. Ensemble factor = x8 self-ensemble time "
             "over one plain forward of the same frame.", "",
             "| size | backend | frames | pure frames/s | video frames/s | video / pure | "
             "ensemble factor |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['size']} | {r['backend']} | {r['frames']} | {r['pure_fps']:.2f} | "
                     f"{r['video_fps']:.2f} | {r['video_vs_pure']:.2f} | "
                     f"{r['ensemble_factor']:.2f} |")
    return lines + [""]
