"""`vidlm serve` reports a failure inside vidlm as the server's, to the official OpenAI client.

Run by `cargo test -p vidlm --test internal_failure`, which builds the model (the demo model
whose decoder fails inside ONNX Runtime once the attention mask is longer than the prompt plus
VIDLM_GOOD_STEPS positions, `python/failing_decoder.py`) and passes:

    VIDLM_BIN             the vidlm binary
    VIDLM_FAILING_MODEL   that model directory
    VIDLM_PROMPT          the prompt the limit was sized for
    VIDLM_GOOD_STEPS      decode steps that run before the failing one
    VIDLM_EXPECTED_MODEL  the `model` `vidlm batch` wrote for the same directory

* A request that needs no more steps succeeds (and carries the batch's `model`).
* A request that runs into the failing step gets a 500 with an OpenAI error object of type
  `server_error` (`openai.InternalServerError`), never a 4xx.
* Streamed, the tokens of the steps that ran arrive, then the stream ends with an error event
  (the client raises `openai.APIError`), not a silent stop.
* The server stays healthy and answers the next request.

Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
import unittest
import urllib.error
import urllib.request

import openai

VIDLM = os.environ["VIDLM_BIN"]
MODEL = os.environ["VIDLM_FAILING_MODEL"]
PROMPT = os.environ["VIDLM_PROMPT"]
GOOD_STEPS = int(os.environ["VIDLM_GOOD_STEPS"])
EXPECTED_MODEL = os.environ["VIDLM_EXPECTED_MODEL"]


class InternalFailure(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cmd = [VIDLM, "serve", "--model", MODEL, "--host", "127.0.0.1", "--port", "0", "--threads", "1"]
        cls.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        cls.log: list[str] = []
        cls.base = None
        deadline = time.time() + 120
        while cls.base is None:
            line = cls.proc.stderr.readline()
            if not line:
                raise RuntimeError(f"vidlm serve exited: {cls.proc.wait()} {''.join(cls.log)}")
            cls.log.append(line)
            m = re.search(r"listening on (http://[0-9.:]+)", line)
            if m:
                cls.base = m.group(1)
            if time.time() > deadline:
                raise RuntimeError("vidlm serve did not start")
        threading.Thread(target=lambda: cls.log.extend(cls.proc.stderr), daemon=True).start()
        while cls.health() != 200:
            if cls.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"vidlm serve never became healthy: {''.join(cls.log)}")
            time.sleep(0.1)
        cls.client = openai.OpenAI(base_url=f"{cls.base}/v1", api_key="none", max_retries=0, timeout=120)

    @classmethod
    def tearDownClass(cls):
        cls.proc.terminate()
        try:
            cls.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            cls.proc.kill()
            cls.proc.wait()

    @classmethod
    def health(cls) -> int:
        try:
            with urllib.request.urlopen(f"{cls.base}/health", timeout=5) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except OSError:
            return 0

    def ask(self, max_tokens: int, **kw):
        return self.client.chat.completions.create(
            model=EXPECTED_MODEL,
            messages=[{"role": "user", "content": PROMPT}],
            max_tokens=max_tokens,
            temperature=0,
            **kw,
        )

    def test_1_a_request_below_the_limit_succeeds_with_the_batch_model_name(self):
        r = self.ask(2)
        self.assertEqual(r.model, EXPECTED_MODEL)
        self.assertEqual(r.usage.completion_tokens, 2)
        self.assertEqual([m.id for m in self.client.models.list().data], [EXPECTED_MODEL])

    def test_2_a_failed_decoder_step_is_a_500_server_error(self):
        with self.assertRaises(openai.InternalServerError) as cm:
            self.ask(64)
        e = cm.exception
        self.assertEqual(e.status_code, 500, e.body)
        self.assertEqual(e.body["type"], "server_error", e.body)
        self.assertEqual(e.body["code"], "internal_error", e.body)
        self.assertIn("decode step failed", e.body["message"])
        for k in ["message", "type", "param", "code"]:
            self.assertIn(k, e.body)

    def test_3_a_stream_that_fails_after_tokens_ends_with_an_error_event(self):
        stream = self.ask(64, stream=True)
        chunks = []
        with self.assertRaises(openai.APIError) as cm:
            for c in stream:
                chunks.append(c)
        self.assertIn("decode step failed", str(cm.exception))
        self.assertEqual(cm.exception.body["type"], "server_error", cm.exception.body)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        self.assertTrue(text, f"tokens of the {GOOD_STEPS} steps that ran arrived first: {chunks}")
        self.assertFalse(
            any(c.choices and c.choices[0].finish_reason for c in chunks),
            "no finish_reason: the answer did not end normally",
        )

    def test_4_the_server_stays_healthy(self):
        self.assertEqual(self.health(), 200)
        self.assertEqual(self.ask(1).usage.completion_tokens, 1)


if __name__ == "__main__":
    unittest.main()
