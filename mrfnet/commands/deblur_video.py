"""The video side of `mrfnet deblur` (not a subcommand of its own): its options, and each video
(or --as-video frame folder) turned into an inference.video job and run with a progress bar in
frames/s.

Kept apart from mrfnet/commands/deblur.py (images) so that each file reads as one job; both share
the backend, the memory limit, the ensemble and the failure list of one command run.
"""
import re
import time
from pathlib import Path


def add_video_arguments(p):
    from inference.video import CONTAINERS

    g = p.add_argument_group(
        "videos", "inputs with a video extension (.mp4, .avi, .mov, .mkv, ...) are deblurred "
        "frame by frame into DIR/<stem>.mp4 at their frame size and rate, streamed (a few frames "
        "in memory); the audio track is NOT carried over. TIME: seconds (12.5), [h:]m:s (1:02.5) "
        "or a frame number (300f)")
    g.add_argument("--container", choices=sorted(CONTAINERS), default="mp4",
                   help="output video: mp4 (MPEG-4 Part 2, 'mp4v'; default), avi (MJPG) or mkv "
                        "(FFV1, lossless, large); OpenCV here cannot write H.264")
    g.add_argument("--start", metavar="TIME", help="first frame to deblur (default: the first)")
    g.add_argument("--end", metavar="TIME", help="stop before this frame (default: the end)")
    g.add_argument("--every", type=int, default=1, metavar="N",
                   help="deblur every Nth frame only (the output runs at fps/N)")
    g.add_argument("--still", metavar="N[,N...]",
                   help="also write these input frame numbers as PNG: DIR/<stem>_f<N>.png "
                        "(and side_by_side/<stem>_f<N>.png with --side-by-side)")
    g.add_argument("--as-video", type=float, metavar="FPS",
                   help="folders are frame sequences (their images, sorted): each becomes one "
                        "video DIR/<folder>.mp4 at FPS")


def check_video_options(args):
    """One problem with the video options, or None."""
    if args.every < 1:
        return f"--every must be 1 or more, got {args.every}"
    if args.as_video is not None and not args.as_video > 0:
        return f"--as-video needs a positive frame rate, got {args.as_video}"
    if args.still and not re.fullmatch(r"\d+(,\d+)*", args.still):
        return f"--still takes frame numbers separated by commas (12,250), got {args.still!r}"
    return None


def video_job(src, dst, source, args, label):
    """The VideoJob of one input from the options (time range, stills, side-by-side)."""
    from inference.video import Selection, VideoError, VideoJob, parse_position

    fps = source.fps
    start = parse_position(args.start, fps) if args.start else 0
    end = parse_position(args.end, fps) if args.end else None
    if end is not None and end <= start:
        raise VideoError(f"--end ({end}f) must come after --start ({start}f)")
    sel = Selection(start, end, args.every)
    wanted = [int(v) for v in args.still.split(",")] if args.still else []
    missed = [n for n in wanted if not sel.includes(n) or n >= (source.total or n + 1)]
    if missed:
        raise VideoError(f"--still {','.join(map(str, missed))}: not among the frames deblurred "
                         f"(from {start}f{f' to {end}f' if end is not None else ''}, "
                         f"every {args.every}, of {source.total or '?'} frames)")
    out_dir = Path(args.out)
    sbs_dir = out_dir / "side_by_side"
    return VideoJob(
        out=dst, selection=sel, container=args.container,
        side_by_side=sbs_dir / dst.name if args.side_by_side else None,
        stills={n: out_dir / f"{dst.stem}_f{n:06d}.png" for n in wanted},
        still_sbs={n: sbs_dir / f"{dst.stem}_f{n:06d}.png" for n in wanted
                   if args.side_by_side},
        captions=("blurred", label))


def deblur_videos(video_map, args, deblur_one, label, failures):
    """Deblur videos (and frame folders) {input: output}; returns how many were written."""
    from mrfnet.progress import ProgressBar, format_seconds

    from mrfnet.commands.deblur import record_failure
    from inference.inputs import is_image
    from inference.video import FolderSource, Interrupted, VideoSource, deblur_video

    written = 0
    for src, dst in video_map.items():
        bar = ProgressBar(1, label=f"deblur {src.name}", unit="frames")
        t0 = time.monotonic()
        try:
            if src.is_dir():
                source = FolderSource(src, args.as_video,
                                      sorted(q for q in src.iterdir() if is_image(q)))
            else:
                source = VideoSource(src)
            job = video_job(src, dst, source, args, label)
            bar.total = max(1, job.selection.count(source.total))
            bar.message(f"{src}: {source.size[0]}x{source.size[1]} at {source.fps:g} fps, "
                        f"{source.total or '?'} frames; deblurring {bar.total} -> {dst} "
                        "(no audio)")
            frames = deblur_video(source, job, lambda f: deblur_one(f)[0], bar.update)
            bar.close()
            took = time.monotonic() - t0
            bar.message(f"{src} -> {dst}: {frames} frames in {format_seconds(took)} "
                        f"({frames / took:.2f} frames/s)")
            written += 1
        except Interrupted as exc:
            bar.close()
            exc.source = src
            raise
        except (ValueError, OSError, MemoryError) as exc:
            bar.close()
            record_failure(src, exc, failures, bar)
    return written
