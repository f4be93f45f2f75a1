"""`mrfnet deblur` on videos, on real Caffe / ONNX Runtime, with clips made here by OpenCV from a
bundled photo blurred with the authors' recipe: frames, size, rate and order kept, each frame
equal (to codec tolerance) to the stills path on the decoded input frame, time range, every
Nth frame, stills, the captioned side-by-side video, frame folders, and bad or interrupted
inputs leaving no video behind."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from data_prep import bundled
from data_prep.imageio import read_image, write_image
from data_prep.recipe import apply_authors_blur, draw_authors_blur
from inference.backends import load
from inference.compose import GAP, caption_height
from inference.tiling import deblur
from inference.video import (CONTAINERS, Interrupted, Selection, VideoError, VideoJob,
                             VideoSource, deblur_video, parse_position)
from test_inference_command import deblur as deblur_cli, model  # noqa: F401 (fixture)

REPO = Path(__file__).resolve().parents[1]
W, H, FPS = 96, 64, 12.0


def blurred_frames(n, w=W, h=H, seed=0):
    """n frames panning across the bundled 'coffee' photo, each blurred with the recipe."""
    photo = bundled.load("coffee")
    rng = np.random.default_rng(seed)
    p = draw_authors_blur(rng)
    return [apply_authors_blur(np.ascontiguousarray(photo[40 + 3 * i:40 + 3 * i + h,
                                                          80 + 7 * i:80 + 7 * i + w]), p)
            for i in range(n)]


def write_clip(path, frames, fourcc, fps=FPS):
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps,
                        (frames[0].shape[1], frames[0].shape[0]))
    assert w.isOpened(), fourcc
    for f in frames:
        w.write(f)
    w.release()
    return path


def read_clip(path):
    """(frames, fps) decoded by OpenCV."""
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), path
    fps, frames = cap.get(cv2.CAP_PROP_FPS), []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    return frames, fps


@pytest.fixture(scope="module")
def tiny(model):
    return model


@pytest.fixture(scope="module")
def shipped():
    return REPO / "models/mrfnet/deploy.prototxt", REPO / "models/mrfnet/mrfnet.caffemodel"


def test_this_opencv_writes_and_reads_the_documented_codecs(tmp_path):
    """docs/inference.md names these: mp4v (.mp4), MJPG (.avi), FFV1 (.mkv); H.264 not writable."""
    frames = blurred_frames(5)
    for name, (fourcc, suffix) in CONTAINERS.items():
        back, fps = read_clip(write_clip(tmp_path / f"c{suffix}", frames, fourcc))
        assert len(back) == 5 and back[0].shape == (H, W, 3) and fps == FPS, name
        assert np.abs(back[2].astype(int) - frames[2]).mean() < 6, name
    assert np.array_equal(read_clip(tmp_path / "c.mkv")[0][3], frames[3])  # FFV1 is lossless
    h264 = cv2.VideoWriter(str(tmp_path / "h.mp4"), cv2.VideoWriter_fourcc(*"avc1"), FPS, (W, H))
    assert not h264.isOpened()


@pytest.mark.parametrize("fourcc,suffix,container,tolerance", [
    ("mp4v", ".mp4", "mp4", 4.0), ("MJPG", ".avi", "avi", 4.0), ("FFV1", ".mkv", "mkv", 0.0)])
def test_each_frame_is_the_still_of_its_decoded_input_frame(tmp_path, shipped, fourcc, suffix,
                                                            container, tolerance, capsys):
    """Default backend (ONNX Runtime) and the shipped model: count, size, rate, order, pixels."""
    clip = write_clip(tmp_path / f"clip{suffix}", blurred_frames(6), fourcc)
    out = tmp_path / "out"
    assert deblur_cli([clip, "--out", out, "--container", container,
                       "--deploy", shipped[0], "--weights", shipped[1]]) == 0
    assert "no audio" in capsys.readouterr().err
    written = out / f"clip{CONTAINERS[container][1]}"
    assert sorted(os.listdir(out)) == [written.name]  # no temporary file left
    got, fps = read_clip(written)
    decoded, _ = read_clip(clip)
    backend = load(shipped[0], shipped[1], "onnxruntime", precision="auto")  # as the CLI
    stills = [deblur(backend, f)[0] for f in decoded]
    assert len(got) == 6 and fps == FPS and got[0].shape == (H, W, 3)
    for i, frame in enumerate(got):
        err = [np.abs(frame.astype(float) - s).mean() for s in stills]
        assert err[i] <= tolerance, (i, err)
        assert int(np.argmin(err)) == i  # frame order kept
        if tolerance == 0:  # lossless: deblurred, not copied. A lossy codec removes much of the
            # fine detail the model adds (about 1-2 grey levels here), so its frame can sit
            # nearer the blurred input than the still; its bound above is what it can promise.
            assert err[i] < np.abs(frame.astype(float) - decoded[i]).mean()


def test_range_every_nth_stills_ensemble_and_side_by_side(tmp_path, tiny):
    clip = write_clip(tmp_path / "clip.mkv", blurred_frames(8), "FFV1")
    out = tmp_path / "out"
    assert deblur_cli([clip, "--out", out, "--container", "mkv", "--start", "1f", "--end", "6f",
                       "--every", "2", "--still", "3", "--side-by-side", "--ensemble",
                       "--backend", "caffe", "--deploy", tiny[0], "--weights", tiny[1]]) == 0
    got, fps = read_clip(out / "clip.mkv")
    decoded, _ = read_clip(clip)
    backend = load(tiny[0], tiny[1], "caffe")
    expect = [deblur(backend, decoded[n], ensemble=True)[0] for n in (1, 3, 5)]
    assert len(got) == 3 and fps == FPS / 2
    for g, e in zip(got, expect):
        assert np.array_equal(g, e)  # lossless container: exactly the stills path
    still = read_image(out / "clip_f000003.png")
    assert np.array_equal(still, expect[1])
    sbs, _ = read_clip(out / "side_by_side" / "clip.mkv")
    cap = caption_height(W)
    assert len(sbs) == 3 and sbs[0].shape == (H + cap, 2 * W + GAP, 3)
    assert np.array_equal(sbs[1][cap:, :W], decoded[3])
    assert np.array_equal(sbs[1][cap:, W + GAP:], expect[1])
    assert sbs[1][:cap].min() < 128  # the captions are drawn
    assert np.array_equal(read_image(out / "side_by_side" / "clip_f000003.png"), sbs[1])


def test_time_positions_and_selection():
    assert parse_position("300f", 25) == 300
    assert parse_position("2.5", 10) == 25
    assert parse_position("1:02.5", 10) == 625
    with pytest.raises(VideoError):
        parse_position("soon", 10)
    sel = Selection(2, 9, 3)
    assert [n for n in range(12) if sel.includes(n)] == [2, 5, 8] and sel.count(12) == 3
    assert Selection(2, None, 3).count(12) == 4


def test_bad_videos_are_named_and_the_good_one_is_still_written(tmp_path, tiny, capsys):
    good = write_clip(tmp_path / "good.avi", blurred_frames(5), "MJPG")
    (tmp_path / "garbage.mp4").write_text("not a video")
    empty = cv2.VideoWriter(str(tmp_path / "empty.avi"), cv2.VideoWriter_fourcc(*"MJPG"), FPS,
                            (W, H))
    empty.release()
    full = write_clip(tmp_path / "full.avi", blurred_frames(8), "MJPG").read_bytes()
    (tmp_path / "cut.avi").write_bytes(full[:len(full) // 2])  # frames end mid-stream
    out = tmp_path / "out"
    rc = deblur_cli([tmp_path / "garbage.mp4", tmp_path / "empty.avi", tmp_path / "cut.avi", good,
                     "--out", out, "--backend", "caffe", "--deploy", tiny[0],
                     "--weights", tiny[1]])
    err = capsys.readouterr().err
    assert rc == 1
    assert sorted(os.listdir(out)) == ["good.mp4"]
    assert len(read_clip(out / "good.mp4")[0]) == 5
    failures = err[err.index("failure(s):"):]
    assert "garbage.mp4: OpenCV cannot open it as a video" in failures
    assert "empty.avi: no frames to deblur" in failures
    assert "cut.avi: decoding stopped at frame" in failures
    assert "1 of 4 video(s) written" in err


def test_frame_folders_as_video_and_a_size_change_mid_stream(tmp_path, tiny, capsys):
    frames = blurred_frames(6)
    good, bad = tmp_path / "seq_good", tmp_path / "seq_bad"
    for i, f in enumerate(frames):
        write_image(good / f"{i:04d}.png", f)
        write_image(bad / f"{i:04d}.png", f if i != 3 else f[:, :-8])
    out = tmp_path / "out"
    rc = deblur_cli([good, bad, "--as-video", "5", "--container", "mkv", "--out", out,
                     "--backend", "caffe", "--deploy", tiny[0], "--weights", tiny[1]])
    err = capsys.readouterr().err
    assert rc == 1
    assert sorted(os.listdir(out)) == ["seq_good.mkv"]
    got, fps = read_clip(out / "seq_good.mkv")
    backend = load(tiny[0], tiny[1], "caffe")
    assert fps == 5 and len(got) == 6
    assert all(np.array_equal(g, deblur(backend, f)[0]) for g, f in zip(got, frames))
    assert f"seq_bad: frame 3 is {W - 8}x{H}, the frames before it {W}x{H}" in err


def test_interrupt_in_the_middle_removes_the_partial_video(tmp_path):
    source = VideoSource(write_clip(tmp_path / "clip.avi", blurred_frames(6), "MJPG"))
    out = tmp_path / "out"
    calls = []

    def deblur_frame(frame):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return frame

    job = VideoJob(out=out / "clip.mp4", side_by_side=out / "sbs" / "clip.mp4")
    with pytest.raises(Interrupted) as info:
        deblur_video(source, job, deblur_frame)
    assert info.value.done == 3
    assert not [p for p in out.rglob("*") if p.is_file()]


def test_sigterm_stops_the_command_with_the_frames_done_and_no_video(tmp_path, shipped):
    clip = write_clip(tmp_path / "long.avi", blurred_frames(40, 128, 96), "MJPG")
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "mrfnet.cli", "deblur", str(clip), "--out",
                             str(out), "--ensemble", "--side-by-side", "--backend", "caffe",
                             "--deploy", str(shipped[0]), "--weights", str(shipped[1])],
                            cwd=REPO, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if "deblurring 40" in line:
            break
    time.sleep(1.5)
    proc.send_signal(signal.SIGTERM)
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 130, err
    assert "interrupted (SIGTERM) after" in err and "partial video was removed" in err
    assert not [p for p in out.rglob("*") if p.is_file() and p.suffix == ".mp4"]


def test_pipeline_overlaps_its_three_stages_keeps_order_and_passes_errors_on():
    """Reading, work and writing that each wait 40 ms per item: run one after another they take
    10 x 120 ms; overlapped, about 10 x 40 ms plus the two ends."""
    from inference.video import pipeline

    def slow_items():
        for i in range(10):
            time.sleep(0.04)
            yield i

    written = []

    def slow_write(x):
        time.sleep(0.04)
        written.append(x)

    t0 = time.perf_counter()
    pipeline(slow_items(), lambda i: (time.sleep(0.04), 2 * i)[1], slow_write)
    took = time.perf_counter() - t0
    assert written == [2 * i for i in range(10)]
    assert took < 0.8, took  # serial: 1.2 s

    def bad_items():
        yield 1
        raise VideoError("frame 1 is broken")

    with pytest.raises(VideoError, match="frame 1 is broken"):
        pipeline(bad_items(), lambda i: i, lambda x: None)

    def bad_write(x):
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        pipeline(iter(range(100)), lambda i: i, bad_write)


def test_bad_video_options_stop_before_any_work(tmp_path, tiny, capsys):
    clip = write_clip(tmp_path / "clip.avi", blurred_frames(3), "MJPG")
    for opts, msg in ((["--every", "0"], "--every must be 1 or more"),
                      (["--still", "3,x"], "--still takes frame numbers"),
                      (["--as-video", "0"], "--as-video needs a positive frame rate")):
        assert deblur_cli([clip, "--out", tmp_path / "o", *opts, "--deploy", tiny[0],
                           "--weights", tiny[1]]) == 2
        assert msg in capsys.readouterr().err
    assert deblur_cli([clip, "--out", tmp_path / "o", "--still", "5", "--backend", "caffe",
                       "--deploy", tiny[0], "--weights", tiny[1]]) == 1
    assert "--still 5: not among the frames deblurred" in capsys.readouterr().err
    assert not [p for p in (tmp_path / "o").rglob("*") if p.is_file()]
