"""`vidlm serve` against the official OpenAI Python client.

Run by `cargo test -p vidlm --test integration serve_openai` (which passes the binary and the fixture paths),
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
* Conformance: what OpenAI clients and vLLM's / llama.cpp's server suites expect — `GET
  /v1/models/{id}`, strict content parts, `logit_bias`, refused no-op-only fields, `model`
  omitted or null, a streamed request over the context refused with a plain 400, CORS with an
  API key, Prometheus metrics under vLLM's names (parsed with `prometheus_client`), and answers
  not cut by transformers' default `max_length` when `max_tokens` is not given.

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
import urllib.error
import urllib.request
from pathlib import Path

import openai
import tokenizers
from prometheus_client.parser import text_string_to_metric_families

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


def raw(base: str, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    """(status, headers, body) of a plain HTTP request (error statuses included)."""
    req = urllib.request.Request(base + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


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
            # --temperature 0: greedy, as the requests below ask (`vidlm run` otherwise follows the
            # checkpoint's generation config, and Qwen3-VL's samples).
            [VIDLM, "run", "--model", str(model), "--messages", path, "--num-frames", str(frames),
             "--max-new-tokens", str(max_tokens), "--threads", "1", "--temperature", "0", "--json"],
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
    for family in ["interleave", "onevision", "video_llava", "llava_next_video", "qwen2_5_vl", "qwen3_vl"]:
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
            ("dotdot path", 400, [{"type": "video_url", "video_url": {"url": f"{a}/../secret.mp4"}}, txt]),
            ("dotdot file URL", 400, [{"type": "video_url", "video_url": {"url": f"file://{a}/../secret.mp4"}}, txt]),
            ("%2e%2e file URL", 400, [{"type": "video_url", "video_url": {"url": f"file://{a}/%2e%2e/secret.mp4"}}, txt]),
            ("%2E%2E to /etc", 400, [{"type": "image_url", "image_url": {"url": f"file://{a}/%2E%2E/%2e%2e/%2e%2e/%2e%2e/etc/passwd"}}, txt]),
            ("symlink to a file outside", 400, [{"type": "video_url", "video_url": {"url": f"{a}/link.mp4"}}, txt]),
            ("symlink to a folder outside", 400, [{"type": "video_url", "video_url": {"url": f"{a}/up/secret.mp4"}}, txt]),
            ("absolute path outside", 400, [{"type": "image_url", "image_url": {"url": "/etc/passwd"}}, txt]),
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
            table.append((f"loopback {spelling}", 400, [{"type": "video_url", "video_url": {"url": f"http://{spelling}:{port}/v.mp4"}}, txt]))
        forbidden = {"dotdot path", "dotdot file URL", "%2e%2e file URL", "%2E%2E to /etc", "symlink to a file outside",
                     "symlink to a folder outside", "absolute path outside"} | {f"loopback {sp}" for sp in SPELLINGS}
        for name, status, content, *extra in table:
            with self.subTest(name):
                # A source the policy forbids: 400 `media_not_allowed` (as OpenAI, vLLM, llama.cpp).
                self.refused(status, content, code="media_not_allowed" if name in forbidden else None, **(extra[0] if extra else {}))
        self.assertEqual(self.upstream.hits, [], "the local server was never contacted")
        # A legitimate request works.
        r = self.ask([{"type": "video_url", "video_url": {"url": f"{a}/ok.mp4"}}, txt], extra_body={"media_io_kwargs": {"video": {"num_frames": 2}}})
        self.assertEqual(r.usage.completion_tokens, 2)

    def test_table_of_raw_http_cases(self):
        """CORS preflights and content types: no client call exists for these, so raw HTTP."""
        b = self.s.base
        auth = {"Authorization": f"Bearer {self.key}"}
        body = json.dumps({"model": "demo-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}).encode()
        preflight = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "authorization,content-type"}
        table = [
            # (name, method, path, body, headers, status, error code or None)
            ("preflight of a completion, no key", "OPTIONS", "/v1/chat/completions", None, preflight, 200, None),
            ("preflight of /v1/models, no key", "OPTIONS", "/v1/models", None,
             {**preflight, "Access-Control-Request-Method": "GET"}, 200, None),
            ("form body", "POST", "/v1/chat/completions", b"model=demo-model&messages=hi",
             {**auth, "Content-Type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type"),
            ("text body", "POST", "/v1/chat/completions", body, {**auth, "Content-Type": "text/plain"}, 415, "unsupported_media_type"),
            ("multipart body", "POST", "/v1/chat/completions", body,
             {**auth, "Content-Type": "multipart/form-data; boundary=x"}, 415, "unsupported_media_type"),
            ("JSON with a charset", "POST", "/v1/chat/completions", body,
             {**auth, "Content-Type": "application/json; charset=utf-8"}, 200, None),
            ("a real request from a browser origin", "POST", "/v1/chat/completions", body,
             {**auth, "Content-Type": "application/json", "Origin": "https://app.example.com"}, 200, None),
            # Any OPTIONS is the CORS layer's (an empty 200): it never reaches a handler.
            ("OPTIONS without a preflight's headers", "OPTIONS", "/v1/chat/completions", None, {}, 200, None),
            ("a GET without the key, from a browser origin", "GET", "/v1/models", None,
             {"Origin": "https://app.example.com"}, 401, "invalid_api_key"),
        ]
        for name, method, path, data, headers, status, code in table:
            with self.subTest(name):
                st, h, out = raw(b, method, path, data, headers)
                self.assertEqual(st, status, out)
                if code:
                    err = json.loads(out)["error"]
                    for k in ["message", "type", "param", "code"]:
                        self.assertIn(k, err)
                    self.assertEqual(err["code"], code)
                if "Origin" in headers:
                    self.assertEqual(h.get("access-control-allow-origin"), "*")
                if method == "OPTIONS" and "Access-Control-Request-Method" in headers:
                    allowed = h.get("access-control-allow-headers", "").lower()
                    self.assertIn("authorization", allowed)
                    self.assertIn("content-type", allowed)
                    self.assertIn(headers["Access-Control-Request-Method"], h.get("access-control-allow-methods", ""))
                self.assertEqual(self.s.health(), 200)

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


def counter(text: str, name: str) -> float:
    """A counter's value, through the Prometheus text parser."""
    for fam in text_string_to_metric_families(text):
        if fam.name == name:
            return sum(s.value for s in fam.samples if s.name == name + "_total")
    raise AssertionError(f"{name} missing from /metrics")


def histogram(text: str, name: str) -> tuple[float, float]:
    """(count, sum) of a histogram, through the Prometheus text parser."""
    for fam in text_string_to_metric_families(text):
        if fam.name == name:
            self_check = fam.type
            assert self_check == "histogram", (name, fam.type)
            values = {s.name: s.value for s in fam.samples if not s.labels or "le" not in s.labels}
            inf = [s.value for s in fam.samples if s.labels.get("le") == "+Inf"]
            assert inf and inf[0] == values[name + "_count"], name
            return values[name + "_count"], values[name + "_sum"]
    raise AssertionError(f"{name} missing from /metrics")


class Conformance(unittest.TestCase):
    """What OpenAI clients and vLLM's / llama.cpp's server test suites expect."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = Path(tempfile.mkdtemp(prefix="vidlm-serve-conf-"))
        shutil.copy(DEMO_VIDEO, cls.tmp / "clip.mp4")
        cls.s = Serve(DEMO_MODEL, "--allowed-local-media-path", str(cls.tmp), "--max-frames", "8")
        cls.c = cls.s.client()
        cls.tok = tokenizers.Tokenizer.from_file(str(DEMO_MODEL / "tokenizer.json"))

    @classmethod
    def tearDownClass(cls):
        cls.s.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def error(self, status: int, call) -> dict:
        with self.assertRaises(openai.APIStatusError) as cm:
            call()
        self.assertEqual(cm.exception.status_code, status, cm.exception.body)
        body = cm.exception.body or {}
        for k in ["message", "type", "param", "code"]:
            self.assertIn(k, body, body)
        return body

    def chat(self, content, **kw):
        return self.c.chat.completions.create(model="demo-model", messages=[{"role": "user", "content": content}], **kw)

    def test_models_retrieve(self):
        m = self.c.models.retrieve("demo-model")
        self.assertEqual((m.id, m.object, m.owned_by), ("demo-model", "model", "vidlm"))
        for other in ["gpt-4o", "demo", "org/demo-model"]:
            with self.subTest(other):
                e = self.error(404, lambda: self.c.models.retrieve(other))
                self.assertEqual(e["code"], "model_not_found")
                self.assertIn("does not exist", e["message"])

    def test_content_parts_are_typed_strictly(self):
        url = (self.tmp / "clip.mp4").as_uri()
        for part, field in [({"type": "video_url", "video_url": url}, "video_url"),
                            ({"type": "image_url", "image_url": url}, "image_url"),
                            ({"type": "input_video", "input_video": url}, "input_video")]:
            with self.subTest(field):
                e = self.error(400, lambda: self.chat([part, {"type": "text", "text": "x"}], max_tokens=2))
                self.assertEqual(e["param"], f"messages[0].content[0].{field}")
                self.assertIn(field, e["message"])
        # Unknown extra keys inside a part stay ignored.
        r = self.chat([{"type": "video_url", "video_url": {"url": url}, "uuid": "x"}, {"type": "text", "text": "x"}],
                      max_tokens=2, extra_body={"media_io_kwargs": {"video": {"num_frames": 2}}})
        self.assertEqual(r.usage.completion_tokens, 2)

    def test_logit_bias(self):
        cat, dog = self.tok.encode(" cat dog", add_special_tokens=False).ids
        for kw in [dict(temperature=0), dict(temperature=1.0, seed=7)]:
            with self.subTest(**kw):
                r = self.chat("Say something.", max_tokens=4, logit_bias={str(cat): 100}, **kw)
                self.assertEqual(r.choices[0].message.content, self.tok.decode([cat] * 4))
        # Two biases at once: the +100 one wins, the -100 one never appears.
        for up, down in [(cat, dog), (dog, cat)]:
            r = self.chat("Say something.", max_tokens=3, temperature=0, logit_bias={str(up): 100, str(down): -100})
            self.assertEqual(r.choices[0].message.content, self.tok.decode([up] * 3))
        # Bad keys and values: 400 naming them.
        vocab = 32064
        for bias, needle in [({"cat": 1}, "cat"), ({"-3": 1}, "-3"), ({str(dog): "high"}, str(dog)),
                             ({str(dog): 101}, str(dog)), ({str(vocab + 5): 1}, str(vocab + 5)),
                             ({str(dog): None}, str(dog))]:
            with self.subTest(bias=bias):
                e = self.error(400, lambda: self.chat("hi", max_tokens=1, logit_bias=bias))
                self.assertIn(needle, e["message"])
                self.assertIn("logit_bias", e["message"] + str(e["param"]))

    def test_fields_that_would_be_ignored_are_refused(self):
        for extra, param in [({"min_tokens": 5}, "min_tokens"), ({"tool_choice": "required"}, "tool_choice"),
                             ({"stop_token_ids": [5]}, "stop_token_ids"), ({"echo": True}, "echo"),
                             ({"media_io_kwargs": {"image": {"size": 3}}}, "media_io_kwargs.image"),
                             ({"stream_options": {"continuous_usage_stats": True}, "stream": True},
                              "stream_options.continuous_usage_stats")]:
            with self.subTest(param):
                e = self.error(400, lambda: self.chat("hi", max_tokens=1, extra_body=extra))
                self.assertEqual(e["param"], param)
        e = self.error(400, lambda: self.c.chat.completions.create(
            model="demo-model", messages=[{"role": "user", "content": "hi", "name": "bob"}], max_tokens=1))
        self.assertEqual(e["param"], "messages[0].name")
        # Their no-op values pass, and so do the honoured vLLM extensions.
        r = self.chat("hi", max_tokens=3, temperature=0,
                      extra_body={"min_tokens": 0, "tool_choice": "none", "echo": False, "ignore_eos": True,
                                  "skip_special_tokens": True})
        self.assertEqual(r.usage.completion_tokens, 3)

    def test_model_may_be_omitted_or_null(self):
        for body in [{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
                     {"model": None, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}]:
            with self.subTest(body=body):
                st, _, out = raw(self.s.base, "POST", "/v1/chat/completions", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
                self.assertEqual(st, 200, out)
                r = json.loads(out)
                self.assertEqual(r["model"], "demo-model")
                self.assertEqual(r["usage"]["completion_tokens"], 2)
        e = self.error(404, lambda: self.c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}]))
        self.assertEqual(e["code"], "model_not_found")

    def test_streamed_failures_before_the_first_token_are_plain_http_errors(self):
        long = "hello " * 5000  # over the demo model's 4096-token context
        for stream in [False, True]:
            with self.subTest(stream=stream):
                e = self.error(400, lambda: self.chat(long, max_tokens=2, stream=stream))
                self.assertEqual(e["code"], "context_length_exceeded")
        # Raw: a 400 with a JSON body, no event stream.
        body = {"model": "demo-model", "stream": True, "messages": [{"role": "user", "content": long}]}
        st, h, out = raw(self.s.base, "POST", "/v1/chat/completions", json.dumps(body).encode(), {"Content-Type": "application/json"})
        self.assertEqual(st, 400)
        self.assertTrue(h.get("content-type", "").startswith("application/json"))
        self.assertNotIn(b"data:", out)
        # A corrupt video, streamed: 415 invalid_media (media that cannot be decoded) before any event.
        bad = {"type": "video_url", "video_url": {"url": "data:video/mp4;base64,AAAAIGZ0eXBpc29tAAACAGlzb21pc28y"}}
        e = self.error(415, lambda: self.chat([bad, {"type": "text", "text": "x"}], max_tokens=2, stream=True))
        self.assertEqual(e["code"], "invalid_media")
        # And a good streamed request still streams.
        chunks = list(self.chat("hi", max_tokens=3, stream=True))
        self.assertEqual(chunks[0].choices[0].delta.role, "assistant")
        self.assertEqual(sum(1 for ch in chunks if ch.choices and ch.choices[0].finish_reason), 1)

    def test_metrics_under_vllm_names_move_by_what_was_served(self):
        before = self.s.metrics()
        url = (self.tmp / "clip.mp4").as_uri()
        video = [{"type": "video_url", "video_url": {"url": url}}, {"type": "text", "text": "What happens?"}]
        served = []
        for content, max_tokens in [(video, 3), (video, 5), ("Hello there.", 4)]:
            r = self.chat(content, max_tokens=max_tokens, temperature=0, extra_body={"media_io_kwargs": {"video": {"num_frames": 3}}})
            served.append((r.usage.prompt_tokens, r.usage.completion_tokens, max_tokens))
        after = self.s.metrics()

        def delta_h(name):
            c0, s0 = histogram(before, name)
            c1, s1 = histogram(after, name)
            return c1 - c0, s1 - s0

        n = len(served)
        prompt = sum(p for p, _, _ in served)
        gen = sum(g for _, g, _ in served)
        self.assertEqual(delta_h("vidlm_request_prompt_tokens"), (n, prompt))
        self.assertEqual(delta_h("vidlm_request_generation_tokens"), (n, gen))
        self.assertEqual(delta_h("vidlm_request_params_n"), (n, n))
        self.assertEqual(delta_h("vidlm_request_params_max_tokens"), (n, sum(m for _, _, m in served)))
        # Requests ran one at a time: every step's tokens are one request's prefill or decode.
        self.assertEqual(delta_h("vidlm_iteration_tokens_total")[1], prompt + gen)
        for h in ["vidlm_request_inference_time_seconds", "vidlm_request_prefill_time_seconds",
                  "vidlm_request_decode_time_seconds"]:
            count, total = delta_h(h)
            self.assertEqual(count, n, h)
            self.assertGreater(total, 0, h)
        # The same video twice: two queries, the second one a hit.
        self.assertEqual(counter(after, "vidlm_mm_cache_queries") - counter(before, "vidlm_mm_cache_queries"), 2)
        self.assertEqual(counter(after, "vidlm_mm_cache_hits") - counter(before, "vidlm_mm_cache_hits"), 1)
        self.assertEqual(counter(after, "vidlm_generation_tokens") - counter(before, "vidlm_generation_tokens"), gen)

    def test_no_max_tokens_means_until_a_stop_or_the_context(self):
        q = "Tell me a long story."
        short = self.chat(q, max_tokens=32, temperature=0)
        full = self.chat(q, temperature=0)
        if short.choices[0].finish_reason == "stop":
            self.assertEqual(full.choices[0].message.content, short.choices[0].message.content)
        else:
            # Not cut at transformers' max_length 20 (prompt included): it runs on to an end of
            # sequence or the 4096-token context.
            self.assertGreater(full.usage.completion_tokens, 32)
            self.assertTrue(full.choices[0].message.content.startswith(short.choices[0].message.content))
            if full.choices[0].finish_reason == "length":
                self.assertEqual(full.usage.total_tokens, 4096)
        streamed = "".join(ch.choices[0].delta.content or "" for ch in self.chat(q, temperature=0, stream=True) if ch.choices)
        self.assertEqual(streamed, full.choices[0].message.content)


def vidlm_run_with(model: Path, messages: list[dict], flags: list[str], max_tokens: int) -> dict:
    """`vidlm run --json` of the messages with these sampling / budget flags."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(to_hf(messages), f)
        path = f.name
    try:
        out = subprocess.run(
            [VIDLM, "run", "--model", str(model), "--messages", path, *flags,
             "--max-new-tokens", str(max_tokens), "--threads", "1", "--json"],
            capture_output=True, text=True, check=False,
        )
        if out.returncode != 0:
            raise AssertionError(f"vidlm run {flags} failed: {out.stderr}")
        return json.loads(out.stdout)
    finally:
        os.unlink(path)


class Budgets(unittest.TestCase):
    """Per-request budgets as vLLM takes them: `media_io_kwargs.video` (num_frames, fps,
    max_frames) samples a request's videos exactly as `vidlm run`'s flags do, by the family's
    rule (LLaVA-OneVision here: usage.prompt_tokens equals `vidlm run`'s); `mm_processor_kwargs`
    (pixel budgets) is refused by a family without them (422); every bad value is an OpenAI
    error naming the field (raw HTTP); the vision cache never shares features across budgets.
    (The Qwen families' budgets are compared with `vidlm preprocess` at the request → processor
    level in `crates/cli/tests/budgets.rs`.)"""

    @classmethod
    def setUpClass(cls):
        cls.model = FIXTURES / "onevision" / "model"
        if not (cls.model / "config.json").is_file():
            raise AssertionError(f"fixture model {cls.model} is missing: run `cargo xtask fixtures`")
        cls.tmp = Path(tempfile.mkdtemp(prefix="vidlm-serve-budgets-"))
        shutil.copy(DEMO_VIDEO, cls.tmp / "clip.mp4")
        cls.s = Serve(cls.model, "--allowed-local-media-path", str(cls.tmp), "--max-frames", "8",
                      "--max-frame-pixels", "4000000")
        cls.c = cls.s.client()
        cls.id = cls.c.models.list().data[0].id

    @classmethod
    def tearDownClass(cls):
        cls.s.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def conv(self, name: str = "clip.mp4") -> list[dict]:
        return [{"role": "user", "content": [video_part(self.tmp / name), {"type": "text", "text": "What happens?"}]}]

    def test_media_io_kwargs_sample_as_vidlm_run_flags_do(self):
        conv = self.conv()
        seen = {}
        for video, flags in [({"num_frames": 2}, ["--num-frames", "2"]),
                             ({"num_frames": 3}, ["--num-frames", "3"]),
                             ({"num_frames": 6}, ["--num-frames", "6"]),
                             ({"fps": 1.0}, ["--fps", "1"]),
                             ({"fps": 30.0, "max_frames": 5}, ["--fps", "30", "--max-frames", "5"])]:
            with self.subTest(video=video):
                want = vidlm_run_with(self.model, conv, flags, max_tokens=4)
                r = self.c.chat.completions.create(model=self.id, messages=conv, max_tokens=4, temperature=0,
                                                   extra_body={"media_io_kwargs": {"video": video}})
                self.assertEqual(r.usage.prompt_tokens, want["prompt_tokens"], video)
                self.assertEqual(r.choices[0].message.content, want["text"], video)
                seen[json.dumps(video)] = r.usage.prompt_tokens
        # The frame count moved the prompt: each num_frames gives its own length.
        n = [seen[json.dumps({"num_frames": k})] for k in (2, 3, 6)]
        self.assertEqual(len(set(n)), 3, n)
        self.assertLess(n[0], n[1])
        self.assertLess(n[1], n[2])

    def test_error_table(self):
        """Raw HTTP: every refusal is an OpenAI error object naming the field."""
        video = self.conv()[0]["content"]

        def body(extra: dict, stream: bool = False) -> bytes:
            b = {"model": self.id, "messages": [{"role": "user", "content": video}], "max_tokens": 2, **extra}
            if stream:
                b["stream"] = True
            return json.dumps(b).encode()

        table = [
            # (name, extra fields, status, code or None, param)
            ("unknown mm_processor_kwargs key", {"mm_processor_kwargs": {"fps": 1}}, 400, "unsupported_parameter", "mm_processor_kwargs.fps"),
            ("unknown media_io_kwargs.video key", {"media_io_kwargs": {"video": {"frames": 3}}}, 400, "invalid_request", "media_io_kwargs.video.frames"),
            ("unknown size key", {"mm_processor_kwargs": {"size": {"shortest_edge": 1, "longest_edge": 2, "height": 3}}}, 400, "invalid_parameter", "mm_processor_kwargs.size.height"),
            ("mm_processor_kwargs not an object", {"mm_processor_kwargs": [1]}, 400, "invalid_parameter", "mm_processor_kwargs"),
            ("max_pixels a string", {"mm_processor_kwargs": {"max_pixels": "big"}}, 400, "invalid_parameter", "mm_processor_kwargs.max_pixels"),
            ("min_pixels a float", {"mm_processor_kwargs": {"min_pixels": 1.5}}, 400, "invalid_parameter", "mm_processor_kwargs.min_pixels"),
            ("num_frames a string", {"media_io_kwargs": {"video": {"num_frames": "4"}}}, 400, "invalid_request", "media_io_kwargs.video.num_frames"),
            ("size without longest_edge", {"mm_processor_kwargs": {"size": {"shortest_edge": 4}}}, 400, "invalid_parameter", "mm_processor_kwargs.size.longest_edge"),
            ("min_pixels 0", {"mm_processor_kwargs": {"min_pixels": 0}}, 400, "invalid_parameter", "mm_processor_kwargs.min_pixels"),
            ("max_pixels negative", {"mm_processor_kwargs": {"max_pixels": -1}}, 400, "invalid_parameter", "mm_processor_kwargs.max_pixels"),
            ("num_frames 0", {"media_io_kwargs": {"video": {"num_frames": 0}}}, 400, "invalid_parameter", "media_io_kwargs.video.num_frames"),
            ("fps negative", {"media_io_kwargs": {"video": {"fps": -2}}}, 400, "invalid_parameter", "media_io_kwargs.video.fps"),
            ("max_frames 0", {"media_io_kwargs": {"video": {"max_frames": 0}}}, 400, "invalid_parameter", "media_io_kwargs.video.max_frames"),
            ("num_frames with fps", {"media_io_kwargs": {"video": {"num_frames": 4, "fps": 1}}}, 400, "invalid_parameter", "media_io_kwargs.video"),
            ("min_pixels above max_pixels", {"mm_processor_kwargs": {"min_pixels": 9000, "max_pixels": 8000}}, 400, "invalid_parameter", "mm_processor_kwargs.min_pixels"),
            ("size shortest above longest", {"mm_processor_kwargs": {"size": {"shortest_edge": 9000, "longest_edge": 8000}}}, 400, "invalid_parameter", "mm_processor_kwargs.size"),
            ("max_pixels over the server's limit", {"mm_processor_kwargs": {"max_pixels": 4000001}}, 413, "media_limit_exceeded", "mm_processor_kwargs.max_pixels"),
            ("num_frames over the server's cap", {"media_io_kwargs": {"video": {"num_frames": 9}}}, 413, "media_limit_exceeded", "media_io_kwargs.video.num_frames"),
            # LLaVA-OneVision's processors have no pixel budget: the model cannot serve it.
            ("pixel budget on a family without one", {"mm_processor_kwargs": {"max_pixels": 20000}}, 422, None, "mm_processor_kwargs"),
            ("size on a family without one", {"mm_processor_kwargs": {"size": {"shortest_edge": 100, "longest_edge": 20000}}}, 422, None, "mm_processor_kwargs"),
        ]
        headers = {"Content-Type": "application/json"}
        for name, extra, status, code, param in table:
            for stream in (False, True):
                with self.subTest(name, stream=stream):
                    st, _, out = raw(self.s.base, "POST", "/v1/chat/completions", body(extra, stream), headers)
                    self.assertEqual(st, status, out)
                    err = json.loads(out)["error"]
                    for k in ["message", "type", "param", "code"]:
                        self.assertIn(k, err)
                    self.assertEqual(err["type"], "invalid_request_error")
                    self.assertEqual(err["param"], param, err)
                    if code:
                        self.assertEqual(err["code"], code, err)
        self.assertEqual(self.s.health(), 200)
        # The no-op values pass.
        r = self.c.chat.completions.create(model=self.id, messages=self.conv(), max_tokens=2, temperature=0,
                                           extra_body={"mm_processor_kwargs": {}, "media_io_kwargs": {"video": {"num_frames": 2}}})
        self.assertEqual(r.usage.completion_tokens, 2)

    def test_the_vision_cache_never_shares_features_across_budgets(self):
        shutil.copy(DEMO_VIDEO, self.tmp / "cached.mp4")
        # Different bytes from clip.mp4 would be a different key anyway; the same bytes under a
        # new name are the same item, so this test owns its counts only by its budgets.
        conv = self.conv("cached.mp4")

        def ask(frames: int):
            return self.c.chat.completions.create(model=self.id, messages=conv, max_tokens=2, temperature=0,
                                                  extra_body={"media_io_kwargs": {"video": {"num_frames": frames, "max_frames": 7}}})

        before = self.s.metrics()
        a = ask(4)
        a2 = ask(4)
        b = ask(5)
        after = self.s.metrics()
        queries = counter(after, "vidlm_mm_cache_queries") - counter(before, "vidlm_mm_cache_queries")
        hits = counter(after, "vidlm_mm_cache_hits") - counter(before, "vidlm_mm_cache_hits")
        self.assertEqual((queries, hits), (3, 1))
        self.assertEqual(a.usage.prompt_tokens, a2.usage.prompt_tokens)
        self.assertEqual(a.choices[0].message.content, a2.choices[0].message.content)
        self.assertNotEqual(a.usage.prompt_tokens, b.usage.prompt_tokens)
        self.assertEqual(b.usage.prompt_tokens, vidlm_run_with(self.model, conv, ["--num-frames", "5"], 2)["prompt_tokens"])


class CorsOrigins(unittest.TestCase):
    def test_only_the_allowed_origins_get_cors_headers(self):
        s = Serve(DEMO_MODEL, "--allowed-origins", "https://app.example.com", "--allowed-headers", "authorization,content-type",
                  api_key="k1")
        try:
            for origin, allowed in [("https://app.example.com", True), ("https://evil.example", False)]:
                with self.subTest(origin):
                    st, h, _ = raw(s.base, "OPTIONS", "/v1/chat/completions", None,
                                   {"Origin": origin, "Access-Control-Request-Method": "POST",
                                    "Access-Control-Request-Headers": "authorization"})
                    self.assertEqual(st, 200)
                    self.assertEqual(h.get("access-control-allow-origin"), origin if allowed else None)
                    self.assertIn("authorization", h.get("access-control-allow-headers", "").lower())
        finally:
            s.close()


if __name__ == "__main__":
    unittest.main()
