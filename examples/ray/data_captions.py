"""Caption videos with vidlm in-process on Ray Data: read a manifest (Parquet or CSV), run
`map_batches(Captioner, concurrency=N)` where each Captioner actor holds one `vidlm.LLM`, and
write the rows with their captions as Parquet.

    python examples/ray/data_captions.py --model models/onevision-0.5b \\
        --input clips.parquet --video-column path --output out/captions \\
        --prompt "Describe this video in detail." --num-frames 8 --max-tokens 256 \\
        --concurrency 4 --batch-size 8 --cpus-per-actor 4

Each actor loads the model once and answers a batch of rows with one `llm.chat([...])` call
(the conversations run batched on vidlm's engine). Relative video paths resolve against the
manifest's folder. A row whose video cannot be used gets an empty caption and its error in the
`error` column (the batch is retried one row at a time), so one bad file never loses a batch.
`--address auto` joins a running cluster; without it Ray starts a local one (what the test
does). The other way to scale out is `vidlm batch` shards (`examples/ray/run_shards.py`).
"""

from __future__ import annotations

import argparse
import os
from typing import Any, Dict, List, Optional

import numpy as np
import ray


class Captioner:
    """A Ray Data actor: one `vidlm.LLM`, a batch of rows in, the rows with captions out."""

    def __init__(self, model: str, prompt: str, video_column: str, base_dir: str,
                 num_frames: Optional[int], fps: Optional[float], max_frames: Optional[int],
                 max_tokens: int, dtype: Optional[str], threads: Optional[int]) -> None:
        import vidlm

        self.vidlm = vidlm
        self.llm = vidlm.LLM(model, dtype=dtype, threads=threads)
        self.params = vidlm.SamplingParams(max_tokens=max_tokens)
        self.prompt = prompt
        self.video_column = video_column
        self.base_dir = base_dir
        self.sampling = dict(num_frames=num_frames, fps=fps, max_frames=max_frames)

    def conversation(self, video: str) -> List[Dict[str, Any]]:
        path = video if os.path.isabs(video) else os.path.join(self.base_dir, video)
        return [{"role": "user", "content": [
            {"type": "video", "path": path},
            {"type": "text", "text": self.prompt},
        ]}]

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        videos = [str(v) for v in batch[self.video_column]]
        convs = [self.conversation(v) for v in videos]
        try:
            outs: List[Any] = list(self.llm.chat(convs, self.params, **self.sampling))
            errors = [""] * len(videos)
        except self.vidlm.VidlmError:
            # One bad row fails the whole call: answer the rows one at a time.
            outs, errors = [], []
            for conv in convs:
                try:
                    outs.append(self.llm.chat(conv, self.params, **self.sampling)[0])
                    errors.append("")
                except self.vidlm.VidlmError as e:
                    outs.append(None)
                    errors.append(f"{type(e).__name__}: {e}")
        batch["caption"] = np.array([o.outputs[0].text if o else "" for o in outs], dtype=object)
        batch["finish_reason"] = np.array([o.outputs[0].finish_reason if o else "" for o in outs], dtype=object)
        batch["completion_tokens"] = np.array([len(o.outputs[0].token_ids) if o else 0 for o in outs], dtype=np.int64)
        batch["error"] = np.array(errors, dtype=object)
        return batch


def main(argv: Optional[List[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="export directory or hub id (what `vidlm run --model` takes)")
    ap.add_argument("--input", required=True, help="manifest: .parquet (file or folder) or .csv")
    ap.add_argument("--video-column", default="path")
    ap.add_argument("--output", required=True, help="output folder of Parquet files")
    ap.add_argument("--prompt", default="Describe this video.")
    ap.add_argument("--num-frames", type=int)
    ap.add_argument("--fps", type=float)
    ap.add_argument("--max-frames", type=int)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--dtype")
    ap.add_argument("--threads", type=int, help="ONNX Runtime threads per actor (default: its CPUs)")
    ap.add_argument("--concurrency", type=int, default=1, help="Captioner actors")
    ap.add_argument("--batch-size", type=int, default=8, help="rows per llm.chat call")
    ap.add_argument("--cpus-per-actor", type=float, default=1)
    ap.add_argument("--gpus-per-actor", type=float, default=0)
    ap.add_argument("--address", help="a running Ray cluster (`auto`); default: start a local one")
    a = ap.parse_args(argv)

    ray.init(address=a.address, ignore_reinit_error=True, include_dashboard=False)
    source = os.path.abspath(a.input)
    if source.endswith(".csv"):
        ds = ray.data.read_csv(source)
    else:
        ds = ray.data.read_parquet(source)
    threads = a.threads if a.threads is not None else max(1, int(a.cpus_per_actor))
    ds = ds.map_batches(
        Captioner,
        fn_constructor_kwargs=dict(
            model=a.model, prompt=a.prompt, video_column=a.video_column,
            base_dir=os.path.dirname(source), num_frames=a.num_frames, fps=a.fps,
            max_frames=a.max_frames, max_tokens=a.max_tokens, dtype=a.dtype, threads=threads,
        ),
        concurrency=a.concurrency,
        batch_size=a.batch_size,
        num_cpus=a.cpus_per_actor,
        num_gpus=a.gpus_per_actor,
    )
    ds.write_parquet(os.path.abspath(a.output))
    print(f"wrote captions to {os.path.abspath(a.output)}")


if __name__ == "__main__":
    main()
