"""The Qwen2.5-VL / Qwen3-VL part of `cargo xtask fixtures` (python/fixtures.py calls `run_family`).

Per family: a tiny random checkpoint (random_checkpoint.py: qwen-proc's assets + vidlm_export/configs.py's
tiny config), transformers greedy tokens and first-step logits on five scenarios (video by num_frames,
video by fps, an image, image + video, two videos) and a left-padded batch of two, the export
(fp32 validated against PyTorch, fp16, q8, q4), and the Python replay of the exported graphs with the
host side of docs/onnx-graphs.md (vidlm_export/qwen_replay.py), whole prefill and chunked, which must
give transformers' tokens exactly in fp32.

Videos are the fixtures' PNG frame lists, declared as a 4 fps clip (VideoMetadata total 8 frames, fps 4,
2.0 s): `video_sampling` in each scenario says how transformers sampled them (`num_frames` or `fps`,
transformers' `do_sample_frames=True`). The goldens keep the processor's integer outputs, the generated
tokens and sampled first-step logits; the pixel tensors are recorded by sha256 only (the processor's own
goldens are python/processor_goldens.py's), which keeps them small.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import torch

import fixtures as fx

# The first seeds (from 1 and 2 in steps of 100) whose goldens clear MIN_MARGIN and MIN_DISTINCT.
SEEDS = {"qwen2_5_vl": 1, "qwen3_vl": 402}
VIDEO_FPS = 4.0
CHUNK = 7
PIXEL_KEYS = ("pixel_values", "pixel_values_videos")


def scenarios() -> dict:
    """name -> (batch of conversations, video sampling kwargs)."""
    def video(name):
        return [{"type": "video", "video": fx.media_ref(name)}]

    def image(name):
        return [{"type": "image", "image": fx.media_ref(name)}]

    def text(t):
        return [{"type": "text", "text": t}]

    user = lambda *parts: {"role": "user", "content": [c for p in parts for c in p]}  # noqa: E731
    return {
        "video_num_frames": ([[user(video("video_a"), text("What is happening in this video?"))]], {"num_frames": 6}),
        "video_fps": ([[user(video("video_a"), text("Describe the motion."))]], {"fps": 2.0}),
        "image": ([[user(image("image_a"), text("Describe the image."))]], {}),
        "image_video": ([[user(image("image_b"), video("video_b"), text("Does the picture appear in the video?"))]],
                        {"num_frames": 4}),
        "multi_video": ([[user(video("video_a"), video("video_b"), text("What changed between the two videos?"))]],
                        {"num_frames": 4}),
        "batched": ([[user(video("video_a"), text("Summarize."))],
                     [user(video("video_b"), text("Describe every object that appears in this clip, in order, and "
                                                  "say what color each one is."))]], {"num_frames": 4}),
    }


def processor_inputs(proc, batch, sampling, media):
    from PIL import Image
    from transformers.video_utils import VideoMetadata

    prompts, images, videos, metas = [], [], [], []
    for conv in batch:
        tpl = [{"role": m["role"], "content": [{"type": c["type"], **({"text": c["text"]} if c["type"] == "text" else {})}
                                                for c in m["content"]]} for m in conv]
        prompts.append(proc.apply_chat_template(tpl, add_generation_prompt=True, tokenize=False))
        for m in conv:
            for c in m["content"]:
                if c["type"] == "image":
                    images.append(Image.fromarray(media[c["image"].split("/")[1]]))
                elif c["type"] == "video":
                    arr = media[c["video"][0].split("/")[1]]
                    videos.append(arr)
                    metas.append(VideoMetadata(total_num_frames=arr.shape[0], fps=VIDEO_FPS, width=arr.shape[2],
                                               height=arr.shape[1], duration=arr.shape[0] / VIDEO_FPS,
                                               video_backend="pil"))
    kw = {"text": prompts, "return_tensors": "pt", "padding": len(batch) > 1}
    if images:
        kw["images"] = images
    if videos:
        kw.update(videos=videos, video_metadata=metas, do_sample_frames=True,
                  num_frames=sampling.get("num_frames"), fps=sampling.get("fps"))
    proc.tokenizer.padding_side = "left"
    return prompts, proc(**kw)


def run_transformers(model, proc, media) -> dict:
    from transformers import GenerationConfig

    gen_cfg = GenerationConfig(max_new_tokens=fx.MAX_NEW_TOKENS, min_new_tokens=fx.MAX_NEW_TOKENS, do_sample=False,
                               eos_token_id=None, pad_token_id=proc.tokenizer.pad_token_id,
                               bos_token_id=model.generation_config.bos_token_id, output_logits=True,
                               return_dict_in_generate=True, repetition_penalty=1.0, top_k=None, top_p=None,
                               temperature=None)
    results = {}
    for name, (batch, sampling) in scenarios().items():
        prompts, inputs = processor_inputs(proc, batch, sampling, media)
        with torch.no_grad():
            out = model.generate(**inputs, generation_config=gen_cfg)
        n_in = inputs["input_ids"].shape[1]
        new = out.sequences[:, n_in:]
        logits = torch.stack(out.logits, dim=1).float()
        top2 = logits.topk(2, dim=-1).values
        results[name] = {
            "messages": batch, "prompts": prompts, "sampling": sampling,
            "inputs": {k: v for k, v in inputs.items() if isinstance(v, torch.Tensor)},
            "tokens": new, "text": proc.tokenizer.batch_decode(new, skip_special_tokens=False),
            "first_logits": logits[:, 0, :], "min_margin": float((top2[..., 0] - top2[..., 1]).min()),
        }
    return results


def record(family, model, results, weights_sha, seed):
    rec, tensors = fx.golden_record(family, model, results, weights_sha, seed)
    rec["video_metadata"] = {"fps": VIDEO_FPS, "note": "frame lists are 4 fps clips; video_sampling per scenario "
                                                       "(transformers do_sample_frames=True)"}
    for name, r in results.items():
        sc = rec["scenarios"][name]
        sc["video_sampling"] = r["sampling"]
        for k in PIXEL_KEYS:
            if k in tensors[name]:
                t = tensors[name].pop(k)
                sc.setdefault("pixel_sha256", {})[k] = hashlib.sha256(t.numpy().tobytes()).hexdigest()
    return rec, tensors


def replay(family, model, results, model_dir: Path, dtype: str) -> tuple[list[dict], list[str]]:
    from vidlm_export.qwen_replay import greedy
    from vidlm_export.replay import OnnxModel

    om = OnnxModel(model_dir, dtype)
    rows, errors = [], []
    for name, r in results.items():
        want = r["tokens"].numpy()
        ref = r["first_logits"].numpy()
        for chunk in ((0, CHUNK) if dtype == "fp32" else (0,)):
            toks, first, pos = greedy(om, model, r["inputs"], fx.MAX_NEW_TOKENS, chunk=chunk)
            if chunk == 0:
                inp = r["inputs"]
                hf_pos, _ = model.model.get_rope_index(
                    inp["input_ids"], mm_token_type_ids=inp["mm_token_type_ids"],
                    image_grid_thw=inp.get("image_grid_thw"), video_grid_thw=inp.get("video_grid_thw"),
                    attention_mask=inp["attention_mask"],
                    **({"second_per_grid_ts": inp["second_per_grid_ts"]} if "second_per_grid_ts" in inp else {}))
                if not np.array_equal(pos, hf_pos.numpy()):
                    errors.append(f"{family}/{name}: host rope index differs from transformers' get_rope_index")
            label = name if chunk == 0 else f"{name}/chunk{chunk}"
            rows.append({"family": family, "dtype": dtype, "scenario": label,
                         "tokens_equal": bool((toks == want).all()), "agreeing_tokens": int((toks == want).sum()),
                         "total_tokens": int(want.size), "agreement": float((toks == want).mean()),
                         "first_logits_max_abs_diff": float(np.abs(first - ref).max()),
                         "first_logits_tolerance": fx.REPLAY_ATOL + fx.REPLAY_RTOL * float(np.abs(ref).max()),
                         "min_margin": r["min_margin"]})
    return rows, errors


def load(ckpt: Path):
    from transformers import AutoProcessor, GenerationConfig

    from vidlm_export import families

    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(ckpt)
    fam = families.family_of(cfg)
    model = families.model_class(fam).from_pretrained(ckpt, dtype=torch.float32, attn_implementation="sdpa").eval()
    # The checkpoint's sampling defaults (repetition_penalty, top_k, ...) stay out of the greedy goldens.
    model.generation_config = GenerationConfig(bos_token_id=model.generation_config.bos_token_id,
                                               pad_token_id=model.generation_config.pad_token_id)
    return model, AutoProcessor.from_pretrained(ckpt)


def run_family(family: str, media, check: bool, dtypes: str):
    """Returns (errors, replay rows, (family, seed, margin))."""
    base = fx.CACHE / "fixtures" / family
    seed = SEEDS[family]
    for _ in range(10):
        ckpt = fx.build_checkpoint(family, seed, base / "hf")
        model, proc = load(ckpt)
        results = run_transformers(model, proc, media)
        margin = min(r["min_margin"] for r in results.values())
        distinct = min(len(set(row)) for r in results.values() for row in r["tokens"].tolist())
        if margin >= fx.MIN_MARGIN and distinct >= fx.MIN_DISTINCT:
            break
        print(f"[fixtures] {family}: seed {seed}: margin {margin:.2e}, distinct {distinct}; reseeding", flush=True)
        seed += 100
    else:
        raise SystemExit(f"error: {family}: no seed with margin >= {fx.MIN_MARGIN}")
    print(f"[fixtures] {family}: seed {seed}, min margin {margin:.3e}", flush=True)
    model_dir = base / "model"
    fx.export(ckpt, model_dir, dtypes)
    errors, rows = [], []
    for dt in dtypes.split(","):
        r, e = replay(family, model, results, model_dir, dt)
        rows += r
        errors += e
        if dt == "fp32":
            errors += [f"{family}/{x['scenario']}: ONNX replay differs from transformers ({x})" for x in r
                       if not x["tokens_equal"] or x["first_logits_max_abs_diff"] > x["first_logits_tolerance"]]
    rec, tensors = record(family, model, results, fx.sha256(ckpt / "model.safetensors"), seed)
    gdir = fx.GOLDENS / family
    if check:
        errors += fx.compare(family, rec, tensors, gdir)
        old = json.loads((gdir / "golden.json").read_text()) if (gdir / "golden.json").is_file() else {"scenarios": {}}
        for name, sc in rec["scenarios"].items():
            if old["scenarios"].get(name, {}).get("pixel_sha256") != sc.get("pixel_sha256"):
                errors.append(f"{family}/{name}: pixel tensors differ from the committed sha256")
    else:
        from safetensors.torch import save_file

        if gdir.exists():
            shutil.rmtree(gdir)
        gdir.mkdir(parents=True)
        (gdir / "golden.json").write_text(json.dumps(rec, indent=1, ensure_ascii=False) + "\n")
        for name, t in tensors.items():
            save_file(t, str(gdir / f"{name}.safetensors"))
    del model
    return errors, rows, (family, seed, margin)
