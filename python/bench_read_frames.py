"""`cargo xtask bench video --python`: `vidlm.read_frames` against the Python readers people use,
side by side in one run, on the same frames.

For each frame count N (8 and 32 by default) the frames are the ones `vidlm.read_frames(path,
num_frames=N)` picks (transformers' uniform indices); every reader is asked for exactly those
indices, from a freshly opened file each time (open + seek + decode + RGB conversion are timed):

- vidlm      `vidlm.read_frames(path, indices=...)` (frame-exact packet index, parallel decode)
- pyav       PyAV: for each index, `container.seek` to the frame's pts (backward to a key frame),
             decode until that pts, `to_ndarray(format="rgb24")`
- torchcodec `VideoDecoder(path, seek_mode="exact").get_frames_at(indices)` (NCHW → NHWC)
- decord     `VideoReader(path).get_batch(indices)` (where PyPI has a wheel for this Python)

Every reader's frames are compared with vidlm's: the same frames must come back. The RGB
conversion is each library's (FFmpeg's swscale, with its own rounding), so pixels may differ by a
little; the check is a mean absolute difference under 1.5 (a neighbouring frame differs far more
on the bench clip) and the largest difference is printed. Times: median (and best) of
`--repeats` runs, interleaved reader by reader; ratios are against vidlm in the same run.

Prints a Markdown table (and writes it to `--out`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np


def read_vidlm(path: str, indices: list[int]) -> np.ndarray:
    import vidlm

    frames, _ = vidlm.read_frames(path, indices=indices)
    return frames


def read_pyav(path: str, indices: list[int]) -> np.ndarray:
    import av

    out = []
    with av.open(path) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        rate = s.average_rate
        start = s.start_time or 0
        for i in indices:
            target = start + int(round(i / rate / s.time_base))
            c.seek(target, stream=s, backward=True, any_frame=False)
            got = None
            for f in c.decode(s):
                if f.pts is not None and f.pts >= target:
                    got = f
                    break
            if got is None:
                raise RuntimeError(f"pyav: frame {i} not decoded")
            out.append(got.to_ndarray(format="rgb24"))
    return np.stack(out)


def read_torchcodec(path: str, indices: list[int]) -> np.ndarray:
    from torchcodec.decoders import VideoDecoder

    d = VideoDecoder(path, seek_mode="exact")
    return d.get_frames_at(indices).data.permute(0, 2, 3, 1).contiguous().numpy()


def read_decord(path: str, indices: list[int]) -> np.ndarray:
    import decord

    vr = decord.VideoReader(path, ctx=decord.cpu(0))
    return vr.get_batch(indices).asnumpy()


READERS = {
    "vidlm": read_vidlm,
    "pyav": read_pyav,
    "torchcodec": read_torchcodec,
    "decord": read_decord,
}


def available(name: str) -> str | None:
    """None when the reader can be imported, else why not."""
    mod = {"vidlm": "vidlm", "pyav": "av", "torchcodec": "torchcodec.decoders", "decord": "decord"}[name]
    try:
        __import__(mod)
        return None
    except Exception as e:  # noqa: BLE001 - report any import failure as the reason
        return f"{type(e).__name__}: {e}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--video", required=True)
    ap.add_argument("--frames", default="8,32")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--readers", default="vidlm,pyav,torchcodec,decord")
    ap.add_argument("--out")
    a = ap.parse_args()
    import vidlm

    path = str(Path(a.video).resolve())
    names = a.readers.split(",")
    missing = {n: available(n) for n in names}
    if missing.get("vidlm"):
        print(f"vidlm cannot be imported: {missing['vidlm']}", file=sys.stderr)
        return 1
    for n, why in missing.items():
        if why:
            print(f"[bench] {n}: not measured ({why})", file=sys.stderr)
    names = [n for n in names if not missing[n]]
    info = vidlm.probe(path)
    lines = [
        f"`read_frames` vs Python readers: {Path(path).name} "
        f"({info.get('width')}x{info.get('height')}, {info.get('frame_count')} frames), "
        f"median of {a.repeats} (best in brackets), fresh open each run",
        "",
        "| frames | reader | median s | best s | vs vidlm | same frames (max / mean abs diff) |",
        "|---:|---|---:|---:|---:|---|",
    ]
    failed = False
    for n in [int(x) for x in a.frames.split(",")]:
        _, finfo = vidlm.read_frames(path, num_frames=n, max_frames=None)
        indices = list(finfo["indices"])
        ref = read_vidlm(path, indices)
        times: dict[str, list[float]] = {r: [] for r in names}
        checks: dict[str, str] = {}
        for r in names:
            got = READERS[r](path, indices)
            if got.shape != ref.shape:
                checks[r] = f"NO: shape {got.shape} != {ref.shape}"
                failed = True
                continue
            d = np.abs(got.astype(np.int16) - ref.astype(np.int16))
            mx, mean = int(d.max()), float(d.mean())
            ok = mean < 1.5
            failed |= not ok
            checks[r] = f"{'yes' if ok else 'NO'} ({mx} / {mean:.3f})"
        for _ in range(a.repeats):
            for r in names:
                t0 = time.perf_counter()
                READERS[r](path, indices)
                times[r].append(time.perf_counter() - t0)
        base = statistics.median(times["vidlm"])
        for r in names:
            med = statistics.median(times[r])
            lines.append(
                f"| {n} | {r} | {med:.3f} | {min(times[r]):.3f} | {med / base:.2f}× | {checks.get(r, '')} |"
            )
    lines.append("")
    lines.append("`vs vidlm` = that reader's median time / vidlm's (above 1: vidlm is faster).")
    text = "\n".join(lines)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
