"""How closely a precision follows fp32, measured the llama.cpp way: teacher-forced top-1 agreement and mean
KL divergence of the next-token distributions, beside the logits' cosine.

Inputs are real pipeline inputs: frames of a real clip (`$VIDLM_TEST_VIDEOS/h264_1080p30_60s.mp4` when it
exists, else a deterministic synthetic clip) through the checkpoint's own processor and chat template, the
vision graph(s) and `embed_tokens` of the precision under test (the graphs `vidlm run --dtype <d>` loads,
fallback included: `replay.OnnxModel`), then `decoder_model_merged` of that precision. As llama.cpp's
`--kl-divergence` does over a text corpus, every precision is then fed the same real text as the answer
(`ANSWER`, teacher forcing, each with its own KV cache), so the `positions` next-token distributions (the
last prompt position and one per answer token) are compared position by position. (A random-weight model's
own greedy continuation repeats one token, which would make top-1 agreement trivial.)

* top-1 agreement: the share of positions whose argmax equals fp32's;
* KL: mean over positions of KL(p_fp32 || p_dtype), softmax in float64 (nats);
* cosine: lowest and mean cosine of the logits vectors.

`python -m vidlm_export.agreement --model <export dir> --hf <checkpoint> --dtypes q8,q4` prints the table;
`cargo xtask export` runs it for every non-fp32 dtype it writes (stored in the manifest's `agreement`).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from . import families

POSITIONS = 64
FRAMES = 2
CLIP = "h264_1080p30_60s.mp4"
PROMPT = "Describe what happens in this video in detail."
# The teacher-forced answer: ordinary English, more than POSITIONS tokens for the Qwen2 and Llama tokenizers.
ANSWER = ("The video opens on a wide street at dusk, where a cyclist in a red jacket rides past a row of "
          "parked cars while pedestrians cross at the corner. A bus stops beside a bakery, two people step "
          "off carrying shopping bags, and the camera slowly pans to the right, following the cyclist until "
          "she turns into a narrow lane lined with trees. In the final seconds the street lights come on, a "
          "dog runs across the road, and the scene fades as traffic begins to move again through the busy "
          "intersection near the old train station.")


def _frames(n: int) -> tuple[np.ndarray, str]:
    videos = os.environ.get("VIDLM_TEST_VIDEOS")
    clip = Path(videos) / CLIP if videos else None
    if clip is not None and clip.is_file():
        from bench_generate import evenly_spaced_frames

        frames = evenly_spaced_frames(str(clip), n)
        return np.asarray(frames), f"{n} frames of {CLIP}"
    # Deterministic synthetic frames: smooth gradients and moving shapes (no test clip here).
    h, w = 480, 640
    yy, xx = np.mgrid[0:h, 0:w]
    out = []
    for t in range(n):
        r = (xx * 255 // w + 40 * t) % 256
        g = (yy * 255 // h) % 256
        b = (((xx - 80 * t) ** 2 + (yy - h // 2) ** 2) < 90 ** 2) * 200 + 30
        out.append(np.stack([r, g, b], -1).astype(np.uint8))
    return np.stack(out), f"{n} synthetic frames"


def pipeline_inputs(hf: Path, use_video: bool):
    """The processor's inputs for one clip and a question (video placeholder, or the first frame as an
    image for families without a video graph)."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(hf)
    answer = processor.tokenizer(ANSWER, add_special_tokens=False)["input_ids"]
    frames, what = _frames(FRAMES)
    kind = "video" if use_video else "image"
    messages = [{"role": "user", "content": [{"type": kind}, {"type": "text", "text": PROMPT}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True)
    if use_video:
        inputs = processor(text=text, videos=[frames], return_tensors="pt")
    else:
        from PIL import Image

        inputs = processor(text=text, images=[Image.fromarray(frames[0])], return_tensors="pt")
        what = what.replace(f"{FRAMES} frames", "the first frame")
    return inputs, what, np.asarray(answer, dtype=np.int64)


def forced_logits(om, model, inputs, positions: int, tokens: np.ndarray | None = None):
    """Logits of `positions` next-token distributions of one row: the last prompt position, then each
    position after feeding `tokens` (the teacher-forced answer) or, without them, this model's own argmax.
    Returns (logits [positions, vocab] float32, tokens fed [positions - 1])."""
    from .replay import image_features, video_features

    cfg = model.config
    if families.uses_mrope(cfg.model_type):
        from . import qwen_replay

        return qwen_replay.forced_logits(om, cfg, inputs, positions, tokens)
    ids = inputs["input_ids"]
    emb = torch.from_numpy(om.run("embed_tokens", {"input_ids": ids.numpy()})[0]).float()
    d = emb.shape[-1]
    img = image_features(om, model, inputs)
    if img is not None:
        emb[ids == cfg.image_token_id] = img.reshape(-1, d)
    vid = video_features(om, inputs)
    if vid is not None:
        emb[ids == cfg.video_token_id] = vid
    dec = om.sessions["decoder_model_merged"]
    names = [o.name for o in dec.get_outputs()]
    past = {n: np.zeros((1, om.past_shapes[n][1], 0, om.past_shapes[n][3]), dtype=om.float_type)
            for n in om.past_names}
    mask = np.ones((1, ids.shape[1]), dtype=np.int64)
    cur = emb.numpy().astype(om.float_type)
    out, fed = [], []
    for step in range(positions):
        total = mask.shape[1]
        pos = np.arange(total - cur.shape[1], total, dtype=np.int64)[None, :]
        outs = dec.run(None, {"inputs_embeds": cur, "attention_mask": mask, "position_ids": pos, **past})
        logits = outs[0][0, -1, :].astype(np.float32)
        out.append(logits)
        if step == positions - 1:
            break
        nxt = int(tokens[step]) if tokens is not None else int(logits.argmax())
        fed.append(nxt)
        for name, val in zip(names[1:], outs[1:]):
            past[name.replace("present.", "past_key_values.")] = val
        cur = om.run("embed_tokens", {"input_ids": np.array([[nxt]], dtype=np.int64)})[0].astype(om.float_type)
        mask = np.ones((1, total + 1), dtype=np.int64)
    return np.stack(out), np.array(fed, dtype=np.int64)


def compare(ref: np.ndarray, got: np.ndarray) -> dict:
    """top-1 agreement, mean / max KL(ref || got) and cosine over positions (rows)."""
    r = ref.astype(np.float64)
    g = got.astype(np.float64)
    lr = r - r.max(-1, keepdims=True)
    lr = lr - np.log(np.exp(lr).sum(-1, keepdims=True))
    lg = g - g.max(-1, keepdims=True)
    lg = lg - np.log(np.exp(lg).sum(-1, keepdims=True))
    kl = (np.exp(lr) * (lr - lg)).sum(-1)
    cos = (r * g).sum(-1) / (np.linalg.norm(r, axis=-1) * np.linalg.norm(g, axis=-1))
    top = r.argmax(-1) == g.argmax(-1)
    return {"positions": int(r.shape[0]), "top1_agreement": float(top.mean()), "top1_agree": int(top.sum()),
            "mean_kl": float(kl.mean()), "max_kl": float(kl.max()), "min_cosine": float(cos.min()),
            "mean_cosine": float(cos.mean())}


def measure(export: Path, hf: Path, dtypes: list[str], model=None, positions: int = POSITIONS,
            threads: int = 2, decoder_files: dict[str, str] | None = None) -> list[dict]:
    """One row per dtype: `compare` of its teacher-forced logits with fp32's, plus which graph ran at which
    precision. `decoder_files` maps a row label to another decoder file in `onnx/` (sweeps)."""
    import json

    from .replay import OnnxModel

    if model is None:
        from transformers import AutoConfig

        cfg = AutoConfig.from_pretrained(hf)
        if families.uses_mrope(cfg.model_type):
            # The Qwen-VL replay (3-row positions, DeepStack) reads the config only: no torch model
            # beside the ONNX Runtime sessions.
            from types import SimpleNamespace

            model = SimpleNamespace(config=cfg)
        else:
            from .cli import load_model

            model, _ = load_model(hf, torch.float32)
    manifest = json.loads((export / "onnx" / "vidlm_manifest.json").read_text())
    use_video = (any(g["name"] == "video_encoder" for g in manifest["graphs"])
                 or families.uses_mrope(manifest.get("family")))  # one vision graph for images and video
    inputs, what, answer = pipeline_inputs(hf, use_video)
    if len(answer) < positions - 1:
        raise ValueError(f"the answer text has {len(answer)} tokens, fewer than the {positions - 1} needed")
    tokens = answer[: positions - 1]
    what += " + a teacher-forced English answer"
    prompt_tokens = int(inputs["input_ids"].shape[1])
    t0 = time.time()
    ref_om = OnnxModel(export, "fp32", threads=threads)
    ref, _ = forced_logits(ref_om, model, inputs, positions, tokens)
    del ref_om
    print(f"[agreement] fp32 reference: {what}, {prompt_tokens} prompt tokens, {positions} positions, "
          f"{len(set(ref.argmax(-1).tolist()))} distinct top-1 tokens ({time.time() - t0:.0f} s)", flush=True)
    rows = []
    runs = [(d, d, None) for d in dtypes] + [(label, "q4", f) for label, f in (decoder_files or {}).items()]
    for label, dtype, dec_file in runs:
        t0 = time.time()
        om = OnnxModel(export, dtype, threads=threads)
        if dec_file is not None:
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.log_severity_level = 3
            om.sessions["decoder_model_merged"] = ort.InferenceSession(str(export / "onnx" / dec_file), so,
                                                                       providers=["CPUExecutionProvider"])
            om.used = {**om.used, "decoder_model_merged": dec_file}
        got, _ = forced_logits(om, model, inputs, positions, tokens)
        row = {"dtype": label, **compare(ref, got), "graphs": dict(om.used), "inputs": what,
               "prompt_tokens": prompt_tokens, "distinct_reference_tokens": int(len(set(ref.argmax(-1).tolist()))),
               "seconds": round(time.time() - t0, 1)}
        rows.append(row)
        print(f"[agreement] {label}: top-1 {row['top1_agree']}/{positions}, mean KL {row['mean_kl']:.4f}, "
              f"min cosine {row['min_cosine']:.5f} ({row['seconds']} s)", flush=True)
        del om
    return rows


def print_rows(rows: list[dict]) -> str:
    head = "| dtype | graphs | positions | top-1 agreement | mean KL | max KL | min cosine | mean cosine |"
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        graphs = ", ".join(f"{g} {d}" for g, d in sorted(r["graphs"].items()))
        lines.append(f"| {r['dtype']} | {graphs} | {r['positions']} | {100 * r['top1_agreement']:.1f} % | "
                     f"{r['mean_kl']:.4f} | {r['max_kl']:.4f} | {r['min_cosine']:.5f} | {r['mean_cosine']:.5f} |")
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, type=Path, help="export directory (vidlm ONNX layout)")
    ap.add_argument("--hf", required=True, type=Path, help="the checkpoint it was exported from")
    ap.add_argument("--dtypes", default="q8,q4")
    ap.add_argument("--positions", type=int, default=POSITIONS)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--decoder", action="append", default=[],
                    help="LABEL=FILE: also measure onnx/FILE as the decoder (the q4 graphs otherwise)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    files = dict(x.split("=", 1) for x in a.decoder)
    rows = measure(a.model, a.hf, [d for d in a.dtypes.split(",") if d], positions=a.positions,
                   threads=a.threads, decoder_files=files)
    print_rows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
