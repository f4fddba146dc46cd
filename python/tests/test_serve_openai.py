"""`vidlm serve` against the official OpenAI Python client.

Run by `cargo test -p vidlm --test serve_openai` (which passes the binary and the fixture paths),
or by hand:

    VIDLM_BIN=target/debug/vidlm VIDLM_FIXTURES=.cache/fixtures \\
        .cache/venv/bin/python -m unittest python/tests/test_serve_openai.py -v

* Parity: a request's text and token counts equal `vidlm run --json` on the same messages (and
  so transformers' greedy tokens, which `vidlm run` is tested against), on the committed demo
  model and on the fixture models of every family; streamed text equals non-streamed text;
  `finish_reason` is sent exactly once; usage adds up.
* Security: a table of malicious requests (path escapes through `..`, `%2e%2e` and symlinks; every
  loopback spelling pointing at a live local HTTP server this test runs; oversized bodies; frame
  and pixel bombs; garbage data URLs; too many media items; bad API keys). Each gets its 4xx,
  the live server is never contacted, and the server stays healthy.
* Load: 32 concurrent clients send 200 requests; none is lost or fails (503s from a full queue are
  retried and counted), and every answer equals the same request run alone.

Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import base64
import concurrent.futures
import http.server
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.request
from pathlib import Path

import openai

ROOT = Path(__file__).resolve().parents[2]
VIDLM = os.environ.get("VIDLM_BIN", str(ROOT / "target" / "debug" / "vidlm"))
FIXTURES = Path(os.environ.get("VIDLM_FIXTURES", ROOT / ".cache" / "fixtures"))
TEST_VIDEOS = Path(os.environ.get("VIDLM_TEST_VIDEOS", ROOT / ".cache" / "test-videos"))
DEMO_MODEL = ROOT / "assets" / "demo-model"
DEMO_VIDEO = ROOT / "assets" / "demo.mp4"


class Serve:
    """A `vidlm serve` process on a free loopback port."""

    def __init__(self, model: Path, *args: str, api_key: str | None = None):
        env = dict(os.environ)
        env.pop("VIDLM_API_KEY", None)
        if api_key:
            env["VIDLM_API_KEY"] = api_key
        cmd = [VIDLM, "serve", "--model", str(model), "--host", "127.0.0.1", "--port", "0", "--threads", "1", *args]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
        self.log: list[str] = []
        self.base = None
        deadline = time.time() + 60
        assert self.proc.stderr is not None
        while self.base is None:
            line = self.proc.stderr.readline()
            if not line:
                raise RuntimeError(f"vidlm serve exited: {self.proc.wait()} {''.join(self.log)}")
            self.log.append(line)
            m = re.search(r"listening on (http://[0-9.:]+)", line)
            if m:
                self.base = m.group(1)
            if time.time() > deadline:
                raise RuntimeError("vidlm serve did not start")
        threading.Thread(target=self._drain, daemon=True).start()
        while self.health() != 200:
            if self.proc.poll() is not None or time.time() > deadline + 120:
                raise RuntimeError(f"vidlm serve never became healthy: {''.join(self.log)}")
            time.sleep(0.1)

    def _drain(self):
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)

    def health(self) -> int:
        try:
            with urllib.request.urlopen(f"{self.base}/health", timeout=5) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except OSError:
            return 0

    def metrics(self) -> str:
        with urllib.request.urlopen(f"{self.base}/metrics", timeout=5) as r:
            return r.read().decode()

    def client(self, key: str = "none") -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.base}/v1", api_key=key, max_retries=0, timeout=300)

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def video_part(path: Path) -> dict:
    return {"type": "video_url", "video_url": {"url": path.resolve().as_uri()}}


def image_part(path: Path) -> dict:
    return {"type": "image_url", "image_url": {"url": path.resolve().as_uri()}}


def to_hf(messages: list[dict]) -> list[dict]:
    """The same conversation in the Hugging Face format `vidlm run --messages` takes."""
    out = []
    for m in messages:
        content = m["content"]
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        parts = []
        for p in content:
            if p["type"] == "text":
                parts.append(p)
            elif p["type"] == "video_url":
                parts.append({"type": "video", "video": p["video_url"]["url"].removeprefix("file://")})
            elif p["type"] == "image_url":
                parts.append({"type": "image", "image": p["image_url"]["url"].removeprefix("file://")})
        out.append({"role": m["role"], "content": parts})
    return out


def vidlm_run(model: Path, messages: list[dict], frames: int, max_tokens: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(to_hf(messages), f)
        path = f.name
    try:
        out = subprocess.run(
            [VIDLM, "run", "--model", str(model), "--messages", path, "--num-frames", str(frames),
             "--max-new-tokens", str(max_tokens), "--threads", "1", "--json"],
            capture_output=True, text=True, check=False,
        )
        if out.returncode != 0:
            raise AssertionError(f"vidlm run failed: {out.stderr}")
        return json.loads(out.stdout)
    finally:
        os.unlink(path)


def make_image(path: Path, w: int = 64, h: int = 48):
    from PIL import Image

    img = Image.new("RGB", (w, h))
    img.putdata([((x * 7) % 256, (y * 11) % 256, ((x + y) * 5) % 256) for y in range(h) for x in range(w)])
    img.save(path)


def models() -> list[tuple[str, Path]]:
    out = [("demo (llava_next_video)", DEMO_MODEL)]
    for family in ["interleave", "onevision", "video_llava", "llava_next_video"]:
        m = FIXTURES / family / "model"
        if not (m / "config.json").is_file():
            raise AssertionError(f"fixture model {m} is missing: run `cargo xtask fixtures`")
        out.append((family, m))
    return out


class Parity(unittest.TestCase):
    """Answers equal `vidlm run`'s, streamed or not, on every family."""

    def test_every_family_matches_vidlm_run_streamed_or_not(self):
        tmp = Path(tempfile.mkdtemp(prefix="vidlm-serve-parity-"))
        try:
            shutil.copy(DEMO_VIDEO, tmp / "clip.mp4")
            make_image(tmp / "pic.png")
            conversations = [
                [{"role": "user", "content": [video_part(tmp / "clip.mp4"), {"type": "text", "text": "What happens in this video?"}]}],
                [{"role": "user", "content": [image_part(tmp / "pic.png"), {"type": "text", "text": "Describe the picture."}]},
                 {"role": "assistant", "content": "It is colourful."},
                 {"role": "user", "content": "Which colours?"}],
            ]
            for name, model in models():
                with self.subTest(model=name):
                    s = Serve(model, "--allowed-local-media-path", str(tmp), "--max-frames", "8")
                    try:
                        c = s.client()
                        model_id = c.models.list().data[0].id
                        for conv in conversations:
                            want = vidlm_run(model, conv, frames=4, max_tokens=8)
                            r = c.chat.completions.create(
                                model=model_id, messages=conv, max_tokens=8, temperature=0,
                                extra_body={"media_io_kwargs": {"video": {"num_frames": 4}}},
                            )
                            self.assertEqual(r.choices[0].message.content, want["text"], name)
                            self.assertEqual(r.usage.completion_tokens, len(want["token_ids"]))
                            self.assertEqual(r.usage.prompt_tokens, want["prompt_tokens"])
                            self.assertEqual(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens)
                            self.assertEqual(r.choices[0].finish_reason, "stop" if want["finish_reason"] == "eos" else "length")
                            # Streamed: the same text, finish_reason exactly once, usage last.
                            stream = c.chat.completions.create(
                                model=model_id, messages=conv, max_tokens=8, temperature=0, stream=True,
                                stream_options={"include_usage": True},
                                extra_body={"media_io_kwargs": {"video": {"num_frames": 4}}},
                            )
                            chunks = list(stream)
                            text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
                            finishes = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
                            self.assertEqual(text, want["text"])
                            self.assertEqual(finishes, [r.choices[0].finish_reason])
                            self.assertEqual(chunks[-1].choices, [])
                            self.assertEqual(chunks[-1].usage.completion_tokens, r.usage.completion_tokens)
                            self.assertEqual(chunks[-1].usage.prompt_tokens, r.usage.prompt_tokens)
                            self.assertTrue(all(ch.usage is None for ch in chunks[:-1]))
                            self.assertEqual(len({ch.id for ch in chunks}), 1)
                    finally:
                        s.close()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


class Upstream:
    """A live HTTP server on 127.0.0.1 that counts the requests it gets (none must arrive)."""

    def __init__(self, body: bytes):
        hits = self.hits = []

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


SPELLINGS = ["localhost", "127.0.0.1", "127.1", "0x7f000001", "2130706433", "0177.0.0.1", "[::1]",
             "[::ffff:127.0.0.1]", "0.0.0.0", "LOCALHOST."]


class Security(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = Path(tempfile.mkdtemp(prefix="vidlm-serve-sec-"))
        cls.allowed = cls.tmp / "allowed"
        cls.allowed.mkdir()
        shutil.copy(DEMO_VIDEO, cls.allowed / "ok.mp4")
        (cls.tmp / "secret.mp4").write_bytes(DEMO_VIDEO.read_bytes())
        os.symlink(cls.tmp / "secret.mp4", cls.allowed / "link.mp4")
        os.symlink(cls.tmp, cls.allowed / "up")
        bomb = TEST_VIDEOS / "hostile_16384x16384.mp4"
        if not bomb.is_file():
            raise AssertionError(f"{bomb} is missing: run `cargo xtask videos`")
        shutil.copy(bomb, cls.allowed / "pixels.mp4")
        cls.upstream = Upstream(DEMO_VIDEO.read_bytes())
        hosts = ",".join(SPELLINGS)
        cls.key = "k-" + base64.b16encode(os.urandom(8)).decode()
        cls.s = Serve(DEMO_MODEL, "--allowed-local-media-path", str(cls.allowed), "--allowed-media-domains", hosts,
                      "--max-frames", "8", "--max-body-bytes", "2000000", "--max-media-items", "4",
                      "--max-video-seconds", "60", api_key=cls.key)

    @classmethod
    def tearDownClass(cls):
        cls.s.close()
        cls.upstream.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def ask(self, content, key=None, **extra):
        c = self.s.client(key or self.key)
        return c.chat.completions.create(model="demo-model", messages=[{"role": "user", "content": content}], max_tokens=2, **extra)

    def refused(self, status, content, key=None, code=None, **extra):
        with self.assertRaises(openai.APIStatusError) as cm:
            self.ask(content, key, **extra)
        self.assertEqual(cm.exception.status_code, status, cm.exception.body)
        body = cm.exception.body or {}
        for k in ["message", "type", "param", "code"]:
            self.assertIn(k, body, body)
        if code:
            self.assertEqual(body["code"], code)
        # Still healthy, still answering.
        self.assertEqual(self.s.health(), 200)

    def test_table_of_malicious_requests(self):
        a = self.allowed
        port = self.upstream.port
        txt = {"type": "text", "text": "What is this?"}
        table = [
            ("dotdot path", 403, [{"type": "video_url", "video_url": {"url": f"{a}/../secret.mp4"}}, txt]),
            ("dotdot file URL", 403, [{"type": "video_url", "video_url": {"url": f"file://{a}/../secret.mp4"}}, txt]),
            ("%2e%2e file URL", 403, [{"type": "video_url", "video_url": {"url": f"file://{a}/%2e%2e/secret.mp4"}}, txt]),
            ("%2E%2E to /etc", 403, [{"type": "image_url", "image_url": {"url": f"file://{a}/%2E%2E/%2e%2e/%2e%2e/%2e%2e/etc/passwd"}}, txt]),
            ("symlink to a file outside", 403, [{"type": "video_url", "video_url": {"url": f"{a}/link.mp4"}}, txt]),
            ("symlink to a folder outside", 403, [{"type": "video_url", "video_url": {"url": f"{a}/up/secret.mp4"}}, txt]),
            ("absolute path outside", 403, [{"type": "image_url", "image_url": {"url": "/etc/passwd"}}, txt]),
            ("frame bomb (num_frames)", 413, [{"type": "video_url", "video_url": {"url": f"{a}/ok.mp4"}}, txt],
             {"extra_body": {"media_io_kwargs": {"video": {"num_frames": 100000}}}}),
            ("pixel bomb", 413, [{"type": "video_url", "video_url": {"url": f"{a}/pixels.mp4"}}, txt]),
            ("garbage data URL", 400, [{"type": "video_url", "video_url": {"url": "data:video/mp4;base64,!!!not-base64!!!"}}, txt]),
            ("garbage bytes in a data URL", 415, [{"type": "video_url", "video_url": {"url": "data:video/mp4;base64," + base64.b64encode(os.urandom(3000)).decode()}}, txt]),
            ("not base64", 400, [{"type": "image_url", "image_url": {"url": "data:image/png,hello"}}, txt]),
            ("too many media items", 413, [{"type": "video_url", "video_url": {"url": f"{a}/ok.mp4"}}] * 5 + [txt]),
            ("unsupported scheme", 400, [{"type": "video_url", "video_url": {"url": "gopher://127.0.0.1/x"}}, txt]),
        ]
        for spelling in SPELLINGS:
            table.append((f"loopback {spelling}", 403, [{"type": "video_url", "video_url": {"url": f"http://{spelling}:{port}/v.mp4"}}, txt]))
        for name, status, content, *extra in table:
            with self.subTest(name):
                self.refused(status, content, **(extra[0] if extra else {}))
        self.assertEqual(self.upstream.hits, [], "the local server was never contacted")
        # A legitimate request works.
        r = self.ask([{"type": "video_url", "video_url": {"url": f"{a}/ok.mp4"}}, txt], extra_body={"media_io_kwargs": {"video": {"num_frames": 2}}})
        self.assertEqual(r.usage.completion_tokens, 2)

    def test_oversized_body(self):
        big = "data:video/mp4;base64," + base64.b64encode(os.urandom(2_100_000)).decode()
        self.refused(413, [{"type": "video_url", "video_url": {"url": big}}, {"type": "text", "text": "x"}], code="request_too_large")

    def test_api_key(self):
        for key in ["wrong", self.key + "x", self.key[:-1]]:
            with self.subTest(key=key):
                self.refused(401, "hi", key=key, code="invalid_api_key")
        with self.assertRaises(openai.AuthenticationError):
            self.s.client("nope").models.list()
        self.assertEqual(self.s.client(self.key).models.list().data[0].id, "demo-model")
        self.assertEqual(self.s.health(), 200)


class Load(unittest.TestCase):
    """32 concurrent clients, 200 requests: none lost, every answer equal to the solo answer."""

    def test_concurrent_clients_get_their_solo_answers(self):
        tmp = Path(tempfile.mkdtemp(prefix="vidlm-serve-load-"))
        shutil.copy(DEMO_VIDEO, tmp / "clip.mp4")
        make_image(tmp / "pic.png")
        s = Serve(DEMO_MODEL, "--allowed-local-media-path", str(tmp), "--max-frames", "8", "--max-queue", "48", "--max-batch", "16")
        try:
            questions = ["What happens?", "Describe the scene.", "Is anyone there?", "What colour is it?",
                         "Count the objects.", "Why?", "Summarize.", "What comes next?"]
            variants = []
            for i, q in enumerate(questions):
                parts = [{"type": "text", "text": q}]
                if i % 3 == 0:
                    parts.insert(0, video_part(tmp / "clip.mp4"))
                elif i % 3 == 1:
                    parts.insert(0, image_part(tmp / "pic.png"))
                variants.append(dict(messages=[{"role": "user", "content": parts}], max_tokens=4 + i % 5, temperature=0,
                                     extra_body={"media_io_kwargs": {"video": {"num_frames": 2 + i % 3}}}))
            c = s.client()
            solo = []
            for v in variants:
                r = c.chat.completions.create(model="demo-model", **v)
                solo.append((r.choices[0].message.content, r.usage.completion_tokens, r.usage.prompt_tokens))
            rejected = []
            failures = []

            def one(i: int):
                v = variants[i % len(variants)]
                while True:
                    try:
                        r = c.chat.completions.create(model="demo-model", **v)
                        return i, (r.choices[0].message.content, r.usage.completion_tokens, r.usage.prompt_tokens)
                    except openai.APIStatusError as e:
                        if e.status_code == 503:
                            rejected.append(i)
                            time.sleep(float(e.response.headers.get("retry-after", "1")) / 10)
                            continue
                        failures.append((i, e.status_code, e.body))
                        return i, None

            t0 = time.time()
            with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
                results = list(pool.map(one, range(200)))
            elapsed = time.time() - t0
            self.assertEqual(failures, [])
            self.assertEqual(len(results), 200)
            for i, got in results:
                self.assertEqual(got, solo[i % len(variants)], f"request {i}")
            m = s.metrics()
            steps = int(re.search(r"^vidlm_decode_steps_total (\d+)", m, re.M).group(1))
            tokens = int(re.search(r"^vidlm_generation_tokens_total (\d+)", m, re.M).group(1))
            print(f"\n[load] 200 requests from 32 clients in {elapsed:.1f} s: 0 failed, {len(rejected)} x 503 (retried), "
                  f"{tokens} tokens in {steps} decode steps ({tokens / max(steps, 1):.1f} rows/step)")
            self.assertLess(steps, tokens, "decode steps were batched")
            self.assertEqual(s.health(), 200)
        finally:
            s.close()
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
