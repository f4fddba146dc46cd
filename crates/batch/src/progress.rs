//! Progress on stderr: an indicatif bar on a terminal (done/total, videos/s, tokens/s, ETA), one
//! plain line every N requests otherwise (logs of cluster jobs stay short), and the summary.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::shard::Shard;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProgressMode {
    /// A bar when stderr is a terminal, else lines.
    #[default]
    Auto,
    /// Always the bar.
    Bar,
    /// One line every N requests.
    Lines,
    /// Nothing but the summary.
    Off,
}

/// The counts of a run, shown as it goes and at the end.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Records in the manifest.
    pub records: usize,
    /// This run's shard.
    pub shard: Shard,
    /// Records owned by the shard.
    pub owned: usize,
    /// Owned records that already had a line (from an earlier run), skipped.
    pub skipped: usize,
    /// Of the skipped, those whose line is an error.
    pub skipped_failed: usize,
    /// Requests answered in this run.
    pub succeeded: usize,
    /// Requests that got an error line in this run.
    pub failed: usize,
    /// Of the failed, those whose error is the server's (status 5xx: a failure inside vidlm,
    /// never the request's fault). `vidlm batch` exits with an error when there are any.
    pub server_errors: usize,
    /// Prompt tokens of the answered requests.
    pub prompt_tokens: u64,
    /// Generated tokens.
    pub completion_tokens: u64,
    /// Wall time of the run (from the start of the manifest scan).
    pub elapsed: Duration,
    /// The output file.
    pub output: PathBuf,
    /// Peak resident memory of the process (`VmHWM`, Linux), measured at the end.
    pub peak_rss_bytes: Option<u64>,
    /// Time spent loading the model (part of `elapsed`; zero when nothing was left to do).
    pub model_load: Duration,
}

/// The peak resident set size of this process so far (`VmHWM` of `/proc/self/status`).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 =
        line.trim_start_matches("VmHWM:").trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb * 1024)
}

impl Summary {
    /// Requests done in this run.
    pub fn done(&self) -> usize {
        self.succeeded + self.failed
    }

    /// Requests the shard still has to do after this run (0 when it finished).
    pub fn remaining(&self) -> usize {
        self.owned.saturating_sub(self.skipped + self.done())
    }

    /// Requests per second in this run.
    pub fn requests_per_second(&self) -> f64 {
        rate(self.done() as f64, self.elapsed)
    }

    /// Generated tokens per second in this run.
    pub fn tokens_per_second(&self) -> f64 {
        rate(self.completion_tokens as f64, self.elapsed)
    }

    /// Requests per second after the model was loaded.
    pub fn requests_per_second_after_load(&self) -> f64 {
        rate(self.done() as f64, self.elapsed.saturating_sub(self.model_load))
    }

    /// The summary as a JSON object (`vidlm batch --summary-json`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "records": self.records,
            "shard": {"index": self.shard.index, "count": self.shard.count},
            "owned": self.owned,
            "skipped": self.skipped,
            "skipped_failed": self.skipped_failed,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "server_errors": self.server_errors,
            "remaining": self.remaining(),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "seconds": self.elapsed.as_secs_f64(),
            "model_load_seconds": self.model_load.as_secs_f64(),
            "requests_per_second": self.requests_per_second(),
            "requests_per_second_after_load": self.requests_per_second_after_load(),
            "tokens_per_second": self.tokens_per_second(),
            "peak_rss_bytes": self.peak_rss_bytes,
            "output": self.output,
        })
    }
}

fn rate(n: f64, t: Duration) -> f64 {
    if t.is_zero() {
        0.0
    } else {
        n / t.as_secs_f64()
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shard = if self.shard.count > 1 {
            format!(" (shard {}: {} of {} records)", self.shard, self.owned, self.records)
        } else {
            String::new()
        };
        write!(
            f,
            "{} requests{shard}: {} succeeded, {} failed in this run",
            self.owned, self.succeeded, self.failed
        )?;
        if self.server_errors > 0 {
            write!(f, " ({} of them server errors)", self.server_errors)?;
        }
        if self.skipped > 0 {
            write!(f, "; {} already done ({} of them failed)", self.skipped, self.skipped_failed)?;
        }
        if self.remaining() > 0 {
            write!(f, "; {} NOT done", self.remaining())?;
        }
        write!(
            f,
            "; {:.1} s, {:.2} videos/s, {:.1} tokens/s",
            self.elapsed.as_secs_f64(),
            self.requests_per_second(),
            self.tokens_per_second()
        )?;
        if let Some(b) = self.peak_rss_bytes {
            write!(f, ", peak RSS {:.0} MiB", b as f64 / (1 << 20) as f64)?;
        }
        write!(f, "; output {}", self.output.display())
    }
}

/// The live display.
#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
    lines: bool,
    every: usize,
    todo: usize,
    done: usize,
    failed: usize,
    tokens: u64,
    start: Instant,
}

impl Progress {
    /// A display for `todo` requests; lines every `every` requests (at least 1).
    pub fn new(mode: ProgressMode, todo: usize, every: usize) -> Progress {
        let terminal = std::io::stderr().is_terminal();
        let (bar, lines) = match mode {
            ProgressMode::Off => (false, false),
            ProgressMode::Lines => (false, true),
            ProgressMode::Bar => (true, false),
            ProgressMode::Auto => (terminal, !terminal),
        };
        let bar = bar.then(|| {
            let b = ProgressBar::with_draw_target(Some(todo as u64), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{spinner} {elapsed_precise} [{wide_bar}] {pos}/{len} {msg} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            b.set_style(style);
            b.enable_steady_tick(Duration::from_millis(250));
            b
        });
        Progress {
            bar,
            lines,
            every: every.max(1),
            todo,
            done: 0,
            failed: 0,
            tokens: 0,
            start: Instant::now(),
        }
    }

    /// Restarts the clock (after loading the model, so rates are about the work).
    pub fn reset_clock(&mut self) {
        self.start = Instant::now();
        if let Some(b) = &self.bar {
            b.reset_elapsed();
            b.reset_eta();
        }
    }

    /// A message above the bar (or a plain line).
    pub fn println(&self, msg: &str) {
        match &self.bar {
            Some(b) => b.println(msg),
            None => eprintln!("{msg}"),
        }
    }

    /// One request finished.
    pub fn record(&mut self, ok: bool, tokens: usize) {
        self.done += 1;
        self.failed += usize::from(!ok);
        self.tokens += tokens as u64;
        let el = self.start.elapsed();
        let vps = rate(self.done as f64, el);
        let tps = rate(self.tokens as f64, el);
        if let Some(b) = &self.bar {
            b.set_position(self.done as u64);
            b.set_message(format!("{vps:.2} videos/s {tps:.1} tokens/s {} failed", self.failed));
        } else if self.lines && (self.done % self.every == 0 || self.done == self.todo) {
            let eta = if vps > 0.0 {
                format!("{:.0} s", (self.todo - self.done.min(self.todo)) as f64 / vps)
            } else {
                "?".into()
            };
            eprintln!(
                "[batch] {}/{} done ({} failed), {vps:.2} videos/s, {tps:.1} tokens/s, ETA {eta}",
                self.done, self.todo, self.failed
            );
        }
    }

    /// Ends the bar.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_line() {
        let s = Summary {
            records: 10,
            shard: Shard { index: 1, count: 2 },
            owned: 5,
            skipped: 2,
            skipped_failed: 1,
            succeeded: 2,
            failed: 1,
            server_errors: 1,
            prompt_tokens: 100,
            completion_tokens: 40,
            elapsed: Duration::from_secs(2),
            output: PathBuf::from("o.jsonl"),
            peak_rss_bytes: Some(3 << 20),
            model_load: Duration::from_secs(1),
        };
        assert_eq!(s.remaining(), 0);
        let t = s.to_string();
        assert!(
            t.contains(
                "5 requests (shard 1/2: 5 of 10 records): 2 succeeded, 1 failed in this run \
                 (1 of them server errors)"
            ),
            "{t}"
        );
        assert!(
            t.contains("2 already done (1 of them failed)")
                && t.contains("1.50 videos/s, 20.0 tokens/s, peak RSS 3 MiB"),
            "{t}"
        );
        assert!(peak_rss_bytes().is_some_and(|b| b > 0));
        let j = s.to_json();
        assert_eq!(
            (
                j["succeeded"].as_u64(),
                j["server_errors"].as_u64(),
                j["requests_per_second_after_load"].as_f64()
            ),
            (Some(2), Some(1), Some(3.0))
        );
    }
}
