"""Run `vidlm batch` over a manifest on a Ray cluster: one Ray task per shard, retried when it
fails (a retried shard resumes from its own output file), then `vidlm batch merge`.

    python examples/ray/run_shards.py --vidlm target/release/vidlm --num-shards 8 \
        --output out/captions-{shard}.jsonl --merged out/captions.jsonl -- \
        --model models/onevision-0.5b --input clips.csv --video-column path \
        --prompt "Describe this video in detail." --num-frames 8 --max-new-tokens 256

Everything after `--` goes to every `vidlm batch` as is (never --shard/--output: this script
sets them). The shard outputs and the merged file must be on storage every node sees (NFS,
a mounted bucket). `--address auto` joins a running cluster; without it Ray starts a local one
(what the test does). Each task asks Ray for `--cpus-per-shard` CPUs (and `--gpus-per-shard`
GPUs), so Ray places as many shards per node as fit.

Retries: a shard whose `vidlm batch` exits non-zero (killed, node lost, out of memory) raises,
and Ray runs it again up to `--max-retries` times; the new run skips every request that already
has a line in the shard's output and cuts a torn last line, so no request is lost or written
twice. `--inject-kill-after K` (for tests) kills each shard's first attempt with SIGKILL once its
output holds K lines, to exercise exactly that path.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

import ray


def count_lines(path: str) -> int:
    try:
        with open(path, "rb") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0


@ray.remote
def run_shard(vidlm: str, batch_args: list[str], shard: int, num_shards: int, output: str, inject_kill_after: int | None) -> dict:
    path = output.replace("{shard}", str(shard))
    cmd = [vidlm, "batch", *batch_args, "--shard", f"{shard}/{num_shards}", "--output", output, "--progress", "lines"]
    marker = path + ".injected-kill"
    inject = inject_kill_after is not None and not os.path.exists(marker)
    started = time.time()
    # The shard's stderr (progress lines, summary) goes to a log file beside its output, not a
    # pipe: a pipe nobody reads while we wait would fill up and stall a long shard.
    log_path = path + ".log"
    log = open(log_path, "a")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
    if inject:
        # Test hook: SIGKILL this first attempt part-way, as a crashed node would.
        while proc.poll() is None and count_lines(path) < inject_kill_after:
            time.sleep(0.05)
        if proc.poll() is None:
            open(marker, "w").close()
            proc.send_signal(signal.SIGKILL)
    proc.wait()
    log.close()
    with open(log_path, errors="replace") as f:
        err = f.read()
    if proc.returncode != 0:
        # Raising makes Ray retry the task; the retry resumes from `path`.
        raise RuntimeError(f"shard {shard}/{num_shards} exited with {proc.returncode}: {err.strip()[-2000:]}")
    return {"shard": shard, "output": path, "seconds": time.time() - started, "lines": count_lines(path), "log": err.strip().splitlines()[-1:]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vidlm", default="vidlm", help="the vidlm binary (on every node)")
    ap.add_argument("--num-shards", type=int, required=True)
    ap.add_argument("--output", required=True, help="shard output path with {shard}")
    ap.add_argument("--merged", required=True, help="the merged output")
    ap.add_argument("--address", default=None, help="Ray cluster address ('auto' to join a running cluster; default: start a local one)")
    ap.add_argument("--cpus-per-shard", type=float, default=1.0)
    ap.add_argument("--gpus-per-shard", type=float, default=0.0)
    ap.add_argument("--max-retries", type=int, default=3)
    ap.add_argument("--inject-kill-after", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("batch_args", nargs=argparse.REMAINDER, help="-- then the arguments of vidlm batch")
    a = ap.parse_args()
    batch_args = a.batch_args[1:] if a.batch_args[:1] == ["--"] else a.batch_args
    if "{shard}" not in a.output:
        ap.error("--output must contain {shard}")
    for forbidden in ("--shard", "--output", "--num-shards"):
        if forbidden in batch_args:
            ap.error(f"{forbidden} is set by this script")
    # The merge reads the same manifest with the same flags as the shards.
    manifest_flags = {"--input", "--format", "--video-column", "--id-column", "--prompt", "--prompt-column"}
    merge_args: list[str] = []
    for i, arg in enumerate(batch_args):
        if arg in manifest_flags and i + 1 < len(batch_args):
            merge_args += [arg, batch_args[i + 1]]
        elif arg.split("=", 1)[0] in manifest_flags and "=" in arg:
            merge_args.append(arg)

    ray.init(address=a.address, include_dashboard=False, logging_level="WARNING")
    task = run_shard.options(num_cpus=a.cpus_per_shard, num_gpus=a.gpus_per_shard, max_retries=a.max_retries, retry_exceptions=True)
    futures = [task.remote(a.vidlm, batch_args, i, a.num_shards, a.output, a.inject_kill_after) for i in range(a.num_shards)]
    results = ray.get(futures)
    for r in sorted(results, key=lambda r: r["shard"]):
        print(f"[ray] shard {r['shard']}/{a.num_shards}: {r['lines']} lines in {r['seconds']:.1f} s  {' '.join(r['log'])}", file=sys.stderr)
    merge = [a.vidlm, "batch", "merge", *merge_args, "--output", a.merged, "--num-shards", str(a.num_shards), a.output]
    subprocess.run(merge, check=True)
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
