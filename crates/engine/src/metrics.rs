//! Engine metrics and their Prometheus text exposition. Names are `vidlm_` plus vLLM's name
//! where vLLM has one (`vllm:time_to_first_token_seconds` → `vidlm_time_to_first_token_seconds`).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::scheduler::SchedulerStats;

const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
];
const ITL_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0,
];
const E2E_BUCKETS: &[f64] = &[
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
];

/// vLLM's `build_1_2_5_buckets`, up to a million tokens (token counts, `max_tokens`).
const TOKEN_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0, 20000.0,
    50000.0, 100000.0, 200000.0, 500000.0, 1000000.0,
];
/// vLLM's `vllm:iteration_tokens_total` buckets (tokens per engine step).
const ITERATION_BUCKETS: &[f64] =
    &[1.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0];
/// vLLM's `vllm:request_params_n` buckets.
const N_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0];
/// vLLM's request phase buckets (`vllm:request_inference_time_seconds` and its parts).
const PHASE_BUCKETS: &[f64] = &[
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
];

/// A cumulative histogram.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    inner: Mutex<(Vec<u64>, f64, u64)>,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram { bounds, inner: Mutex::new((vec![0; bounds.len()], 0.0, 0)) }
    }

    /// Records one observation (seconds, or a count).
    pub fn observe(&self, v: f64) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        for (i, b) in self.bounds.iter().enumerate() {
            if v <= *b {
                g.0[i] += 1;
            }
        }
        g.1 += v;
        g.2 += 1;
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).2
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (b, c) in self.bounds.iter().zip(g.0.iter()) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {c}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"+Inf\"}} {}\n{name}_sum {}\n{name}_count {}",
            g.2, g.1, g.2
        );
    }
}

/// Everything the engine measures. The gauges and counters are the scheduler's
/// ([`Metrics::publish`]); the histograms are observed by the engine core.
#[derive(Debug)]
pub struct Metrics {
    /// Requests being prefilled or decoded.
    pub running: AtomicU64,
    /// Requests admitted but not yet running (queued, loading media, ready).
    pub waiting: AtomicU64,
    /// Prompt tokens of requests that started decoding.
    pub prompt_tokens: AtomicU64,
    /// Generated tokens.
    pub generation_tokens: AtomicU64,
    /// Requests finished by `stop` / `length` / cancelled (`abort`) / failed (`error`).
    pub finished_stop: AtomicU64,
    /// See `finished_stop`.
    pub finished_length: AtomicU64,
    /// See `finished_stop`.
    pub finished_abort: AtomicU64,
    /// See `finished_stop`.
    pub failed: AtomicU64,
    /// Requests refused because the queue was full.
    pub rejected: AtomicU64,
    /// Vision cache hits (media items whose decoding and vision encoding were skipped).
    pub vision_cache_hits: AtomicU64,
    /// Vision cache misses.
    pub vision_cache_misses: AtomicU64,
    /// Bytes held by the vision cache.
    pub vision_cache_bytes: AtomicU64,
    /// Decode steps run (one per batched forward pass).
    pub decode_steps: AtomicU64,
    /// Prefill chunks run.
    pub prefill_chunks: AtomicU64,
    /// Time to first token.
    pub ttft: Histogram,
    /// Time between consecutive tokens of a request.
    pub itl: Histogram,
    /// Arrival to last token.
    pub e2e: Histogram,
    /// Arrival to the start of prefill.
    pub queue_time: Histogram,
    /// Tokens per engine step: the prefill chunk's tokens plus one per row decoded
    /// (`vidlm_iteration_tokens_total`, vLLM's histogram of the same name).
    pub iteration_tokens: Histogram,
    /// Prompt tokens of each finished request.
    pub request_prompt_tokens: Histogram,
    /// Generated tokens of each finished request.
    pub request_generation_tokens: Histogram,
    /// `n` of each finished request (always 1: vidlm answers one choice).
    pub request_params_n: Histogram,
    /// The token limit of each finished request: its `max_tokens`, else what the context left.
    pub request_params_max_tokens: Histogram,
    /// Start of prefill to the last token, per finished request.
    pub request_inference_time: Histogram,
    /// Start of prefill to the first token.
    pub request_prefill_time: Histogram,
    /// First token to the last token.
    pub request_decode_time: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let z = || AtomicU64::new(0);
        Metrics {
            running: z(),
            waiting: z(),
            prompt_tokens: z(),
            generation_tokens: z(),
            finished_stop: z(),
            finished_length: z(),
            finished_abort: z(),
            failed: z(),
            rejected: z(),
            vision_cache_hits: z(),
            vision_cache_misses: z(),
            vision_cache_bytes: z(),
            decode_steps: z(),
            prefill_chunks: z(),
            ttft: Histogram::new(TTFT_BUCKETS),
            itl: Histogram::new(ITL_BUCKETS),
            e2e: Histogram::new(E2E_BUCKETS),
            queue_time: Histogram::new(E2E_BUCKETS),
            iteration_tokens: Histogram::new(ITERATION_BUCKETS),
            request_prompt_tokens: Histogram::new(TOKEN_BUCKETS),
            request_generation_tokens: Histogram::new(TOKEN_BUCKETS),
            request_params_n: Histogram::new(N_BUCKETS),
            request_params_max_tokens: Histogram::new(TOKEN_BUCKETS),
            request_inference_time: Histogram::new(PHASE_BUCKETS),
            request_prefill_time: Histogram::new(PHASE_BUCKETS),
            request_decode_time: Histogram::new(PHASE_BUCKETS),
        }
    }
}

impl Metrics {
    /// Stores the scheduler's gauges and counters (the engine calls it after every change of the
    /// scheduler's state: they are computed from its queues, never kept by hand).
    pub fn publish(&self, st: &SchedulerStats) {
        let set = |a: &AtomicU64, v: u64| a.store(v, Ordering::SeqCst);
        set(&self.running, st.running as u64);
        set(&self.waiting, st.waiting as u64);
        set(&self.rejected, st.rejected);
        set(&self.finished_stop, st.finished_stop);
        set(&self.finished_length, st.finished_length);
        set(&self.finished_abort, st.cancelled);
        set(&self.failed, st.failed);
        set(&self.prefill_chunks, st.prefill_chunks);
        set(&self.decode_steps, st.decode_steps);
        set(&self.prompt_tokens, st.prompt_tokens);
        set(&self.generation_tokens, st.generation_tokens);
    }

    /// Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut scalar = |name: &str, kind: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        };
        scalar(
            "vidlm_num_requests_running",
            "gauge",
            "Requests being prefilled or decoded.",
            g(&self.running),
        );
        scalar(
            "vidlm_num_requests_waiting",
            "gauge",
            "Requests waiting: queued, loading media, or prefilled-ready.",
            g(&self.waiting),
        );
        scalar(
            "vidlm_prompt_tokens_total",
            "counter",
            "Prompt tokens processed.",
            g(&self.prompt_tokens),
        );
        scalar(
            "vidlm_generation_tokens_total",
            "counter",
            "Tokens generated.",
            g(&self.generation_tokens),
        );
        scalar(
            "vidlm_vision_cache_hits_total",
            "counter",
            "Media items served from the vision cache.",
            g(&self.vision_cache_hits),
        );
        scalar(
            "vidlm_vision_cache_misses_total",
            "counter",
            "Media items decoded and encoded.",
            g(&self.vision_cache_misses),
        );
        scalar(
            "vidlm_vision_cache_usage_bytes",
            "gauge",
            "Bytes held by the vision cache.",
            g(&self.vision_cache_bytes),
        );
        scalar(
            "vidlm_num_requests_rejected_total",
            "counter",
            "Requests refused because the queue was full.",
            g(&self.rejected),
        );
        scalar(
            "vidlm_request_failure_total",
            "counter",
            "Requests that failed after admission.",
            g(&self.failed),
        );
        scalar(
            "vidlm_decode_steps_total",
            "counter",
            "Batched decode steps.",
            g(&self.decode_steps),
        );
        scalar("vidlm_prefill_chunks_total", "counter", "Prefill chunks.", g(&self.prefill_chunks));
        // vLLM's multimodal cache counters (`vllm:mm_cache_queries`, `vllm:mm_cache_hits`): every
        // media item a request names by source asks the vision cache once.
        scalar(
            "vidlm_mm_cache_queries_total",
            "counter",
            "Multimodal cache queries (media items looked up in the vision cache).",
            g(&self.vision_cache_hits) + g(&self.vision_cache_misses),
        );
        scalar(
            "vidlm_mm_cache_hits_total",
            "counter",
            "Multimodal cache hits (media items served from the vision cache).",
            g(&self.vision_cache_hits),
        );
        let _ = writeln!(out, "# HELP vidlm_request_success_total Finished requests by finish reason.\n# TYPE vidlm_request_success_total counter");
        for (reason, v) in [
            ("stop", &self.finished_stop),
            ("length", &self.finished_length),
            ("abort", &self.finished_abort),
        ] {
            let _ = writeln!(
                out,
                "vidlm_request_success_total{{finished_reason=\"{reason}\"}} {}",
                g(v)
            );
        }
        self.ttft.render(&mut out, "vidlm_time_to_first_token_seconds", "Time to first token.");
        self.itl.render(
            &mut out,
            "vidlm_inter_token_latency_seconds",
            "Time between tokens of a request.",
        );
        self.e2e.render(
            &mut out,
            "vidlm_e2e_request_latency_seconds",
            "Request latency, arrival to last token.",
        );
        self.queue_time.render(
            &mut out,
            "vidlm_request_queue_time_seconds",
            "Arrival to prefill start.",
        );
        for (h, name, help) in [
            (
                &self.iteration_tokens,
                "vidlm_iteration_tokens_total",
                "Tokens per engine step (prefill chunk tokens + decoded rows).",
            ),
            (
                &self.request_prompt_tokens,
                "vidlm_request_prompt_tokens",
                "Prompt tokens of finished requests.",
            ),
            (
                &self.request_generation_tokens,
                "vidlm_request_generation_tokens",
                "Generated tokens of finished requests.",
            ),
            (
                &self.request_params_n,
                "vidlm_request_params_n",
                "The n parameter of finished requests.",
            ),
            (
                &self.request_params_max_tokens,
                "vidlm_request_params_max_tokens",
                "The token limit of finished requests (max_tokens, else what the context left).",
            ),
            (
                &self.request_inference_time,
                "vidlm_request_inference_time_seconds",
                "Prefill start to last token of finished requests.",
            ),
            (
                &self.request_prefill_time,
                "vidlm_request_prefill_time_seconds",
                "Prefill start to first token of finished requests.",
            ),
            (
                &self.request_decode_time,
                "vidlm_request_decode_time_seconds",
                "First to last token of finished requests.",
            ),
        ] {
            h.render(&mut out, name, help);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.ttft.observe(0.03);
        m.ttft.observe(3.0);
        m.prompt_tokens.fetch_add(12, Ordering::Relaxed);
        let t = m.render();
        assert!(t.contains("vidlm_prompt_tokens_total 12\n"));
        assert!(t.contains("vidlm_time_to_first_token_seconds_bucket{le=\"0.04\"} 1\n"));
        assert!(t.contains("vidlm_time_to_first_token_seconds_bucket{le=\"5\"} 2\n"));
        assert!(t.contains("vidlm_time_to_first_token_seconds_count 2\n"));
        assert!(t.contains("# TYPE vidlm_num_requests_waiting gauge"));
        m.iteration_tokens.observe(300.0);
        m.vision_cache_hits.fetch_add(1, Ordering::Relaxed);
        m.vision_cache_misses.fetch_add(2, Ordering::Relaxed);
        let t = m.render();
        assert!(t.contains("vidlm_iteration_tokens_total_bucket{le=\"256\"} 0\n"));
        assert!(t.contains("vidlm_iteration_tokens_total_bucket{le=\"512\"} 1\n"));
        assert!(t.contains("vidlm_mm_cache_queries_total 3\n"));
        assert!(t.contains("vidlm_mm_cache_hits_total 1\n"));
        for h in ["request_prompt_tokens", "request_params_n", "request_decode_time_seconds"] {
            assert!(t.contains(&format!("# TYPE vidlm_{h} histogram")), "{h}");
        }
        for l in t.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = l.rsplit_once(' ').unwrap_or(("", ""));
            assert!(name.starts_with("vidlm_"), "{l}");
            assert!(value.parse::<f64>().is_ok(), "{l}");
        }
    }
}
