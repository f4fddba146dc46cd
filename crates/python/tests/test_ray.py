"""`examples/ray/data_captions.py` on a local Ray: a CSV manifest → map_batches(Captioner,
concurrency=2) → Parquet, with the captions `llm.chat` gives each row alone (and a bad row's
error in its own row).

Ray is heavy, so it runs under the `cargo xtask setup` venv's interpreter (VIDLM_RAY_PYTHON,
which has ray and pyarrow) with a copy of the vidlm package under test on its PYTHONPATH."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import vidlm
from conftest import ROOT


def test_ray_data_example(tmp_path: Path, demo_video: Path, videos: Path) -> None:
    ray_py = os.environ.get("VIDLM_RAY_PYTHON", str(ROOT / ".cache" / "venv" / "bin" / "python"))
    assert Path(ray_py).is_file(), f"{ray_py} missing: `cargo xtask setup` installs the Python env (with ray)"
    pkg = tmp_path / "pkg"
    shutil.copytree(Path(vidlm.__file__).parent, pkg / "vidlm")
    rows = [("a", str(demo_video)), ("b", str(videos / "h264_bframes.mp4")), ("bad", "no_such.mp4"),
            ("c", str(videos / "rotated_90.mp4"))]
    manifest = tmp_path / "clips.csv"
    manifest.write_text("id,path\n" + "".join(f"{i},{p}\n" for i, p in rows))
    out = tmp_path / "captions"
    model = ROOT / "assets" / "demo-model"
    env = dict(os.environ, PYTHONPATH=str(pkg), RAY_DISABLE_USAGE_STATS="1", RAY_USAGE_STATS_ENABLED="0")
    cmd = [ray_py, str(ROOT / "examples" / "ray" / "data_captions.py"), "--model", str(model),
           "--input", str(manifest), "--output", str(out), "--prompt", "What happens?",
           "--num-frames", "4", "--max-tokens", "6", "--concurrency", "2", "--batch-size", "2",
           # Half a CPU per actor: on a 2-CPU machine two whole-CPU actors would leave none for
           # the read and write tasks (Ray Data waits for a CPU forever).
           "--cpus-per-actor", "0.5",
           "--threads", "1"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    dump = subprocess.run(
        [ray_py, "-c", "import sys, json, pyarrow.parquet as pq; "
         "print(json.dumps(pq.read_table(sys.argv[1]).to_pylist()))", str(out)],
        env=env, capture_output=True, text=True, check=True,
    )
    got = {r["id"]: r for r in json.loads(dump.stdout)}
    assert sorted(got) == sorted(i for i, _ in rows)
    llm = vidlm.LLM(str(model), threads=2)
    params = vidlm.SamplingParams(max_tokens=6)
    for i, p in rows:
        if i == "bad":
            assert got[i]["caption"] == "" and "NotFoundError" in got[i]["error"], got[i]
            continue
        conv = [{"role": "user", "content": [{"type": "video", "path": p}, {"type": "text", "text": "What happens?"}]}]
        [want] = llm.chat(conv, params, num_frames=4)
        assert got[i]["caption"] == want.outputs[0].text, i
        assert got[i]["completion_tokens"] == len(want.outputs[0].token_ids)
        assert got[i]["error"] == ""
