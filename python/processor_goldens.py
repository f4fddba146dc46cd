"""Goldens for crates/processor: what transformers 5.23 produces for each family.

Builds (with ``assets.py``) weightless model directories with the real-size processor configs and
real tokenizers for all four families, runs ``processor.apply_chat_template(..., tokenize=True,
return_dict=True, padding=True, padding_side="left", return_tensors="pt")`` on procedurally
generated frames and images (odd sizes, portrait, tiny, large; the same generator is implemented in
the Rust tests), with the torchvision backend (transformers 5's default) and the PIL backend, and
writes:

* ``crates/processor/tests/goldens/processor_goldens.json`` — per case: rendered prompts,
  ``input_ids`` / ``attention_mask`` run-length encoded (exact), ``image_sizes``, and for every pixel
  tensor its shape, an exact checksum of the float32 bits (``wsum64``), per-channel sums and sums of squares,
  and 256 sampled (flat index, value) pairs; plus the u8 → float32 normalization tables of every
  family/backend (exact);
* ``crates/processor/tests/goldens/processor_small.safetensors`` — two small cases in full, as the
  u8 reconstruction ``round((x * std + mean) * 255)``.

Run:  .cache/venv/bin/python python/processor_goldens.py [--assets DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

import assets

ROOT = Path(__file__).resolve().parent.parent

OUT = ROOT / "crates" / "processor" / "tests" / "goldens"
FAMILIES = assets.FAMILIES
SAMPLES = 256


# --- the fixture generator (mirrored in crates/processor/tests/common/mod.rs) ---------------
def pattern(h: int, w: int, t: int = 0, seed: int = 0) -> np.ndarray:
    """Deterministic RGB u8 image: gradients + hashed noise."""
    y = np.arange(h, dtype=np.uint64)[:, None, None]
    x = np.arange(w, dtype=np.uint64)[None, :, None]
    c = np.arange(3, dtype=np.uint64)[None, None, :]
    with np.errstate(over="ignore"):
        hs = (x * np.uint64(73856093)) ^ (y * np.uint64(19349663)) ^ ((c + np.uint64(1)) * np.uint64(83492791))
        hs = hs ^ np.uint64((t * 2654435761) & 0xFFFFFFFFFFFFFFFF) ^ np.uint64(seed * 97531)
        hs = (hs * np.uint64(2246822519)) & np.uint64(0xFFFFFFFF)
        hs = hs ^ (hs >> np.uint64(15))
    noise = hs & np.uint64(0xFF)
    gx = x * np.uint64(255) // np.uint64(max(w - 1, 1))
    gy = y * np.uint64(255) // np.uint64(max(h - 1, 1))
    gd = (x + y + np.uint64(t * 8)) % np.uint64(256)
    smooth = np.where(c == 0, gx, np.where(c == 1, gy, gd))
    return ((smooth * np.uint64(3) + noise) // np.uint64(4)).astype(np.uint8)


def video(t: int, h: int, w: int, seed: int) -> np.ndarray:
    return np.stack([pattern(h, w, i, seed) for i in range(t)])


# --- cases ---------------------------------------------------------------------------------------
# Media parts: {"type": "image", "gen": [h, w, seed]} / {"type": "video", "gen": [t, h, w, seed]}.
def img(h, w, seed):
    return {"type": "image", "gen": [h, w, seed]}


def vid(t, h, w, seed):
    return {"type": "video", "gen": [t, h, w, seed]}


def txt(s):
    return {"type": "text", "text": s}


CASES = {
    "video8": [[{"role": "user", "content": [vid(8, 240, 320, 1), txt("Why is this video funny?")]}]],
    "video_portrait_1080p": [[{"role": "user", "content": [vid(2, 1920, 1080, 2), txt("What happens?")]}]],
    "video_tiny": [[{"role": "user", "content": [vid(3, 9, 17, 3), txt("Tiny.")]}]],
    "image_odd": [[{"role": "user", "content": [img(301, 517, 4), txt("Describe the image.")]}]],
    "image_portrait": [[{"role": "user", "content": [img(640, 360, 5), txt("Portrait?")]}]],
    "image_tiny": [[{"role": "user", "content": [img(5, 7, 6), txt("What is this?")]}]],
    "image_large": [[{"role": "user", "content": [img(1080, 1920, 7), txt("Large.")]}]],
    "multi_turn_mixed": [[
        {"role": "system", "content": [txt("You are a helpful assistant.")]},
        {"role": "user", "content": [img(200, 300, 8), img(120, 90, 9), vid(4, 97, 131, 10), txt("Compare them.")]},
        {"role": "assistant", "content": [txt("They differ.")]},
        {"role": "user", "content": [txt("How, exactly?")]},
    ]],
    "batch_left_pad": [
        [{"role": "user", "content": [txt("Hello there, how are you today?")]}],
        [{"role": "user", "content": [vid(2, 50, 70, 11), txt("Short.")]}],
    ],
    "text_only": [[{"role": "user", "content": [txt("Héllo wörld 😀 — no media.")]}]],
}
# Cases stored in full (u8 reconstruction): (case, family, backend, key).
FULL = [
    ("image_tiny", "video_llava", "pil", "pixel_values_images"),
    ("video_tiny", "video_llava", "torchvision", "pixel_values_videos"),
]


def materialize(conv, family):
    """Replaces generator specs by arrays. Interleave has no video processor: a video becomes its
    frames, each an image part (what the Rust processor does)."""
    out = []
    for m in conv:
        parts = []
        for p in m["content"]:
            if p.get("type") == "image" and "gen" in p:
                h, w, s = p["gen"]
                parts.append({"type": "image", "image": pattern(h, w, 0, s)})
            elif p.get("type") == "video" and "gen" in p:
                t, h, w, s = p["gen"]
                v = video(t, h, w, s)
                if family == "interleave":
                    parts.extend({"type": "image", "image": f} for f in v)
                else:
                    parts.append({"type": "video", "video": v})
            else:
                parts.append(p)
        out.append({**m, "content": parts})
    return out


def rle(ids):
    out = []
    for v in ids:
        if out and out[-1][0] == v:
            out[-1][1] += 1
        else:
            out.append([int(v), 1])
    return out


def wsum64(a: np.ndarray) -> str:
    """Order-independent exact checksum of float32 bits: sum_i bits_i * (i * K | 1) mod 2^64."""
    bits = a.reshape(-1).view(np.uint32).astype(np.uint64)
    idx = np.arange(bits.size, dtype=np.uint64)
    with np.errstate(over="ignore"):
        w = (idx * np.uint64(0x9E3779B97F4A7C15)) | np.uint64(1)
        h = np.sum(bits * w, dtype=np.uint64)
    return f"{int(h):016x}"


def summarize(x: torch.Tensor) -> dict:
    a = x.detach().cpu().contiguous().numpy().astype(np.float32)
    flat = a.reshape(-1)
    n = flat.size
    rng = np.random.default_rng(12345)
    idx = np.sort(rng.choice(n, size=min(SAMPLES, n), replace=False)) if n else np.array([], dtype=np.int64)
    chan_axis = a.ndim - 3
    moved = np.moveaxis(a, chan_axis, 0).reshape(3, -1).astype(np.float64)
    return {
        "shape": list(a.shape),
        "wsum64": wsum64(a),
        "channel_sum": moved.sum(axis=1).tolist(),
        "channel_sumsq": (moved * moved).sum(axis=1).tolist(),
        "sample_index": idx.tolist(),
        "sample_value": [float(v) for v in flat[idx]],
    }


def build_processor(model_dir: Path, backend: str):
    from transformers import AutoImageProcessor, AutoProcessor

    proc = AutoProcessor.from_pretrained(model_dir)
    if getattr(proc.image_processor, "backend", "pil") != backend:
        try:
            proc.image_processor = AutoImageProcessor.from_pretrained(model_dir, backend=backend)
        except Exception:  # noqa: BLE001 - class without that backend: transformers falls back too
            pass
    return proc


def lut(proc, kind: str) -> list:
    """Normalized values of u8 0..255 per channel, through the processor's own normalization."""
    values = torch.arange(256, dtype=torch.uint8)
    if kind == "video":
        vp = proc.video_processor
        x = values.view(1, 1, 256).expand(3, 1, 256).unsqueeze(0)  # (1, 3, 1, 256)
        y = vp.rescale_and_normalize(x.clone(), vp.do_rescale, vp.rescale_factor, vp.do_normalize, vp.image_mean, vp.image_std)
        return y[0, :, 0, :].float().numpy().tolist()
    ip = proc.image_processor
    if getattr(ip, "backend", "pil") == "torchvision":
        x = values.view(1, 1, 256).expand(3, 1, 256).unsqueeze(0)
        y = ip.rescale_and_normalize(x.clone(), ip.do_rescale, ip.rescale_factor, ip.do_normalize, ip.image_mean, ip.image_std)
        return y[0, :, 0, :].float().numpy().tolist()
    from transformers.image_transforms import normalize, rescale
    from transformers.image_utils import ChannelDimension

    x = np.broadcast_to(np.arange(256, dtype=np.uint8).reshape(1, 1, 256), (3, 1, 256)).copy()
    y = rescale(x, ip.rescale_factor, input_data_format=ChannelDimension.FIRST) if ip.do_rescale else x.astype(np.float32)
    if ip.do_normalize:
        y = normalize(y, ip.image_mean, ip.image_std, input_data_format=ChannelDimension.FIRST)
    return np.asarray(y, dtype=np.float32)[:, 0, :].tolist()


# Direct resize goldens (bilinear too): (src_h, src_w, out_h, out_w, seed).
RESIZES = [(480, 640, 224, 298), (1080, 1920, 336, 597), (200, 150, 384, 384), (13, 7, 384, 384),
           (300, 50, 60, 40), (50, 300, 40, 60), (899, 1024, 1012, 1152), (7, 5, 3, 2), (333, 517, 517, 333),
           (100, 1000, 384, 384), (1000, 100, 90, 10), (64, 64, 65, 63)]


def resize_goldens() -> list:
    from PIL import Image
    import torchvision.transforms.v2.functional as tvF
    from torchvision.transforms import InterpolationMode

    out = []
    for i, (sh, sw, oh, ow) in enumerate(RESIZES):
        src = pattern(sh, sw, 0, 100 + i)
        for filt in ("bicubic", "bilinear"):
            pil = np.array(Image.fromarray(src).resize(
                (ow, oh), resample=Image.BICUBIC if filt == "bicubic" else Image.BILINEAR))
            t = torch.from_numpy(src).permute(2, 0, 1).contiguous()
            mode = InterpolationMode.BICUBIC if filt == "bicubic" else InterpolationMode.BILINEAR
            tv = tvF.resize(t, [oh, ow], interpolation=mode, antialias=True).permute(1, 2, 0).contiguous().numpy()
            for backend, arr in (("pil", pil), ("torchvision", tv)):
                out.append({"src": [sh, sw, 100 + i], "out": [oh, ow], "filter": filt, "backend": backend,
                            "bytes_sum": wsum64(arr.astype(np.float32))})
    return out


# --- Qwen2.5-VL / Qwen3-VL (patchified pixels, grids, the families' own frame sampling) --------
QWEN_FAMILIES = assets.QWEN_VL_FAMILIES


def vidm(t, h, w, seed, fps):
    """A whole video of t frames playing at fps (transformers gets it with video_metadata)."""
    return {"type": "video", "gen": [t, h, w, seed], "fps": fps}


# case -> (conversations, call options). Options: num_frames / fps / max_frames / min_pixels /
# max_pixels, as `vidlm preprocess` takes them.
QWEN_CASES = {
    "video_num_frames": ([[{"role": "user", "content": [vidm(30, 96, 128, 21, 10.0), txt("What happens?")]}]],
                         {"num_frames": 8}),
    "video_num_frames_odd": ([[{"role": "user", "content": [vidm(30, 96, 128, 22, 10.0), txt("Odd.")]}]],
                             {"num_frames": 5}),
    "video_num_frames_7": ([[{"role": "user", "content": [vidm(17, 64, 80, 23, 25.0), txt("Seven.")]}]],
                           {"num_frames": 7}),
    "video_fps": ([[{"role": "user", "content": [vidm(30, 96, 128, 24, 10.0), txt("By rate.")]}]],
                  {"fps": 2.0}),
    "video_fps_capped": ([[{"role": "user", "content": [vidm(40, 72, 96, 25, 8.0), txt("Capped.")]}]],
                         {"fps": 4.0, "max_frames": 6}),
    "video_default": ([[{"role": "user", "content": [vidm(12, 64, 64, 26, 4.0), txt("Default sampling.")]}]],
                      {}),
    "image": ([[{"role": "user", "content": [img(301, 517, 27), txt("Describe the image.")]}]], {}),
    "image_small": ([[{"role": "user", "content": [img(5, 7, 28), txt("Tiny.")]}]], {}),
    "image_large": ([[{"role": "user", "content": [img(1080, 1920, 29), txt("Large.")]}]], {}),
    "image_budget": ([[{"role": "user", "content": [img(480, 640, 30), txt("Budget.")]}]],
                     {"min_pixels": 3136, "max_pixels": 40000}),
    "image_video": ([[{"role": "user", "content": [img(120, 90, 31), vidm(20, 80, 112, 32, 5.0), txt("Both.")]}]],
                    {"num_frames": 4}),
    "two_videos": ([[{"role": "user", "content": [vidm(20, 80, 112, 33, 5.0), vidm(24, 112, 80, 34, 12.0),
                                                  txt("Compare.")]}]], {"num_frames": 4}),
    "multi_turn_batch": ([
        [{"role": "system", "content": [txt("Be brief.")]},
         {"role": "user", "content": [img(200, 300, 35), txt("What is it?")]},
         {"role": "assistant", "content": [txt("A pattern.")]},
         {"role": "user", "content": [txt("Sure?")]}],
        [{"role": "user", "content": [txt("Hello there, how are you today?")]}],
    ], {}),
}


def qwen_inputs(convs):
    """(conversations with arrays, images, videos, video_metadata) in transformers' order."""
    images, videos, metas, out = [], [], [], []
    for conv in convs:
        msgs = []
        for m in conv:
            parts = []
            for p in m["content"]:
                if p.get("type") == "image" and "gen" in p:
                    h, w, sd = p["gen"]
                    images.append(pattern(h, w, 0, sd))
                    parts.append({"type": "image"})
                elif p.get("type") == "video" and "gen" in p:
                    t, h, w, sd = p["gen"]
                    videos.append(video(t, h, w, sd))
                    metas.append({"total_num_frames": t, "fps": p["fps"]})
                    parts.append({"type": "video"})
                else:
                    parts.append(p)
            msgs.append({**m, "content": parts})
        out.append(msgs)
    return out, images, videos, metas


def qwen_goldens(assets_dir: Path) -> dict:
    from transformers import AutoProcessor

    cases = []
    for fam in QWEN_FAMILIES:
        for backend in ("torchvision", "pil"):
            for name, (convs, opts) in QWEN_CASES.items():
                proc = AutoProcessor.from_pretrained(assets_dir / fam)
                if backend == "pil":
                    from transformers import AutoImageProcessor

                    proc.image_processor = AutoImageProcessor.from_pretrained(assets_dir / fam, backend="pil")
                    if not any(p.get("type") == "image" for c in convs for m in c for p in m["content"]):
                        continue
                msgs, images, videos, metas = qwen_inputs(convs)
                prompts = [proc.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in msgs]
                kw = {"padding": True, "padding_side": "left", "return_tensors": "pt"}
                if videos:
                    kw["video_metadata"] = metas
                    if "num_frames" in opts or "fps" in opts:
                        kw["do_sample_frames"] = True  # what apply_chat_template sets
                    for k in ("num_frames", "fps"):
                        if k in opts:
                            kw[k] = opts[k]
                    if "num_frames" in opts:
                        # Qwen3VLVideoProcessor fills `fps` from its default (2) and then refuses
                        # num_frames + fps: transformers 5.23 needs fps=None spelled out.
                        kw["fps"] = None
                    if "max_frames" in opts:
                        proc.video_processor.max_frames = opts["max_frames"]
                    # The video processor's own frame settings (`cap_pixels_per_frame` stays unset:
                    # transformers 5.23's default, no cap).
                for k in ("min_pixels", "max_pixels"):
                    if k in opts:
                        kw[k] = opts[k]  # transformers' (deprecated but honoured) call arguments
                out = proc(text=prompts, images=images or None, videos=videos or None, **kw)
                entry = {
                    "case": name, "family": fam, "backend": backend, "options": opts,
                    "conversations": convs, "prompts": prompts,
                    "input_ids": [rle(r.tolist()) for r in out["input_ids"]],
                    "attention_mask": [rle(r.tolist()) for r in out["attention_mask"]],
                    "tensors": {},
                }
                for key in ("pixel_values", "pixel_values_videos"):
                    if key in out:
                        a = out[key].detach().cpu().contiguous().numpy().astype(np.float32)
                        flat = a.reshape(-1)
                        rng = np.random.default_rng(12345)
                        idx = np.sort(rng.choice(flat.size, size=min(SAMPLES, flat.size), replace=False))
                        entry["tensors"][key] = {"shape": list(a.shape), "wsum64": wsum64(a),
                                                 "sample_index": idx.tolist(),
                                                 "sample_value": [float(v) for v in flat[idx]]}
                for key in ("image_grid_thw", "video_grid_thw"):
                    if key in out:
                        entry[key] = out[key].tolist()
                if "second_per_grid_ts" in out:
                    entry["second_per_grid_ts"] = [float(np.float32(v)) for v in out["second_per_grid_ts"].tolist()]
                    entry["second_per_grid_ts_dtype"] = str(out["second_per_grid_ts"].dtype)
                cases.append(entry)
                print(f"{fam:11s} {backend:11s} {name:22s} ids={tuple(out['input_ids'].shape)} "
                      + " ".join(f"{k}={tuple(v['shape'])}" for k, v in entry["tensors"].items())
                      + f" vgrid={entry.get('video_grid_thw')}", flush=True)
    return {"transformers": __import__("transformers").__version__, "cases": cases}


# `vidlm preprocess` on files: assets/demo.mp4 (320x240, 120 frames, 30 fps) decoded by the ffmpeg
# CLI as rgb24 (what vidlm-video-io returns bit for bit) and a small PNG, with their metadata.
QWEN_CLI_IMAGE = "qwen_cli_image.png"
QWEN_CLI_CASES = [
    # (name, family, messages, options)
    ("q25_image_video_num_frames", "qwen2_5_vl",
     [{"role": "user", "content": [{"type": "image", "image": QWEN_CLI_IMAGE},
                                   {"type": "video", "video": "demo.mp4"}, {"type": "text", "text": "What happens?"}]}],
     {"num_frames": 4}),
    ("q25_video_fps_capped", "qwen2_5_vl",
     [{"role": "user", "content": [{"type": "video", "video": "demo.mp4"}, {"type": "text", "text": "Go."}]}],
     {"fps": 2.0, "max_frames": 6}),
    ("q3_video_fps", "qwen3_vl",
     [{"role": "user", "content": [{"type": "video", "video": "demo.mp4"}, {"type": "text", "text": "When?"}]}],
     {"fps": 1.0}),
    ("q3_image_budget_video_odd", "qwen3_vl",
     [{"role": "user", "content": [{"type": "image", "image": QWEN_CLI_IMAGE},
                                   {"type": "video", "video": "demo.mp4"}, {"type": "text", "text": "Both."}]}],
     {"num_frames": 5, "max_pixels": 20000}),
]


def ffmpeg_rgb(path: Path) -> np.ndarray:
    import subprocess

    probe = json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height",
         "-of", "json", str(path)], check=True, capture_output=True).stdout)["streams"][0]
    raw = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-vsync", "0", "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], check=True, capture_output=True).stdout
    h, w = probe["height"], probe["width"]
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, h, w, 3)


def summary(x) -> dict:
    a = x.detach().cpu().contiguous().numpy().astype(np.float32)
    flat = a.reshape(-1)
    rng = np.random.default_rng(12345)
    idx = np.sort(rng.choice(flat.size, size=min(SAMPLES, flat.size), replace=False))
    return {"shape": list(a.shape), "wsum64": wsum64(a), "sample_index": idx.tolist(),
            "sample_value": [float(v) for v in flat[idx]]}


def qwen_cli_goldens(assets_dir: Path, out_dir: Path) -> list:
    from PIL import Image
    from transformers import AutoProcessor

    Image.fromarray(pattern(61, 83, 0, 77)).save(out_dir / QWEN_CLI_IMAGE)
    frames = ffmpeg_rgb(ROOT / "assets" / "demo.mp4")
    meta = {"total_num_frames": int(frames.shape[0]), "fps": 30.0}
    image = np.array(Image.open(out_dir / QWEN_CLI_IMAGE).convert("RGB"))
    cases = []
    for name, fam, messages, opts in QWEN_CLI_CASES:
        proc = AutoProcessor.from_pretrained(assets_dir / fam)
        prompt = proc.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        kw = {"return_tensors": "pt", "video_metadata": [meta], "do_sample_frames": True}
        for k in ("num_frames", "fps", "min_pixels", "max_pixels"):
            if k in opts:
                kw[k] = opts[k]
        if "num_frames" in opts:
            kw["fps"] = None
        if "max_frames" in opts:
            proc.video_processor.max_frames = opts["max_frames"]
        has_image = any(p["type"] == "image" for p in messages[0]["content"])
        out = proc(text=[prompt], images=[image] if has_image else None, videos=[frames], **kw)
        entry = {"case": name, "family": fam, "messages": messages, "options": opts,
                 "input_ids": rle(out["input_ids"][0].tolist()),
                 "tensors": {k: summary(out[k]) for k in ("pixel_values", "pixel_values_videos") if k in out}}
        for key in ("image_grid_thw", "video_grid_thw"):
            if key in out:
                entry[key] = out[key].tolist()
        if "second_per_grid_ts" in out:
            entry["second_per_grid_ts"] = [float(v) for v in out["second_per_grid_ts"].tolist()]
        cases.append(entry)
        print(f"cli {name}: ids={tuple(out['input_ids'].shape)} vgrid={entry.get('video_grid_thw')}", flush=True)
    return cases


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--assets", type=Path, default=assets.CACHE / "assets" / "hub",
                    help="directory holding <family>/ model dirs (built with assets.py if missing)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--qwen-only", action="store_true",
                    help="only the Qwen2.5-VL / Qwen3-VL goldens (qwen_vl_goldens.json)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for fam in QWEN_FAMILIES:
        if not (args.assets / fam / "tokenizer.json").exists():
            assets.build(fam, args.assets / fam)
    qwen = qwen_goldens(args.assets)
    qwen["cli"] = qwen_cli_goldens(args.assets, args.out)
    (args.out / "qwen_vl_goldens.json").write_text(json.dumps(qwen, ensure_ascii=False, separators=(",", ":")))
    if args.qwen_only:
        return 0
    for fam in FAMILIES:
        if not (args.assets / fam / "tokenizer.json").exists():
            assets.build(fam, args.assets / fam)

    goldens = {"transformers": __import__("transformers").__version__, "cases": [], "luts": {},
               "resize": resize_goldens()}
    full = {}
    for fam in FAMILIES:
        for backend in ("torchvision", "pil"):
            proc = build_processor(args.assets / fam, backend)
            ib = getattr(proc.image_processor, "backend", "pil")
            goldens["luts"][f"{fam}/{backend}/image"] = {"backend": ib, "lut": lut(proc, "image")}
            if getattr(proc, "video_processor", None) is not None:
                goldens["luts"][f"{fam}/{backend}/video"] = {"backend": "torchvision", "lut": lut(proc, "video")}
            for name, convs in CASES.items():
                batch = [materialize(c, fam) for c in convs]
                out = proc.apply_chat_template(
                    batch, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt",
                    processor_kwargs={"padding": True, "padding_side": "left"},
                )
                prompts = proc.apply_chat_template(batch, add_generation_prompt=True, tokenize=False)
                entry = {
                    "case": name, "family": fam, "backend": backend, "image_backend": ib,
                    "conversations": convs, "prompts": prompts,
                    "input_ids": [rle(r.tolist()) for r in out["input_ids"]],
                    "attention_mask": [rle(r.tolist()) for r in out["attention_mask"]],
                    "tensors": {},
                }
                for key in ("pixel_values", "pixel_values_images", "pixel_values_videos"):
                    if key in out:
                        entry["tensors"][key] = summarize(out[key])
                if "image_sizes" in out:
                    entry["image_sizes"] = out["image_sizes"].tolist()
                if "batch_num_images" in out:
                    entry["batch_num_images"] = out["batch_num_images"].tolist()
                for (fc, ff, fb, fk) in FULL:
                    if (fc, ff, fb) == (name, fam, backend) and fk in out:
                        x = out[fk].float()
                        src = proc.video_processor if "videos" in fk else proc.image_processor
                        mean = torch.tensor(src.image_mean, dtype=torch.float64).view(3, 1, 1)
                        std = torch.tensor(src.image_std, dtype=torch.float64).view(3, 1, 1)
                        u8 = torch.round((x.double() * std + mean) * 255).clamp(0, 255).to(torch.uint8)
                        full[f"{name}/{fam}/{backend}/{fk}"] = u8.contiguous()
                goldens["cases"].append(entry)
                print(f"{fam:17s} {backend:11s} {name:22s} ids={tuple(out['input_ids'].shape)} "
                      + " ".join(f"{k}={tuple(v['shape'])}" for k, v in entry["tensors"].items()), flush=True)
    (args.out / "processor_goldens.json").write_text(json.dumps(goldens, ensure_ascii=False, separators=(",", ":")))
    from safetensors.torch import save_file

    save_file(full, str(args.out / "processor_small.safetensors"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
