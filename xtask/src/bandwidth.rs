//! Memory-read bandwidth of this machine, measured the way a decode step uses memory: every
//! thread streams through its own buffer far larger than the caches and reads each byte once.
//!
//! Decoding one token reads (about) every weight of the decoder once, so `bandwidth / bytes of
//! weights per token` is the ceiling on decode tokens/s that no runtime can beat at that precision.
//! xtask is compiled with `opt-level = 3` (see the workspace `Cargo.toml`) so that this loop runs at
//! memory speed rather than at the speed of unoptimised iterator code.

use std::hint::black_box;
use std::sync::Barrier;
use std::time::Instant;

/// One read-bandwidth measurement.
#[derive(Debug, Clone, Copy)]
pub struct Bandwidth {
    /// Best observed read rate, bytes per second.
    pub bytes_per_s: f64,
    /// Threads used.
    pub threads: usize,
    /// Bytes read per pass (all threads together).
    pub bytes_per_pass: usize,
    /// Passes timed (the best is kept).
    pub passes: usize,
}

/// Sums a buffer with eight independent accumulators (vectorised by the compiler, no carried
/// dependency), so the loop is limited by how fast memory delivers the bytes.
fn sum(v: &[u64]) -> u64 {
    let mut acc = [0u64; 8];
    let chunks = v.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            acc[i] = acc[i].wrapping_add(c[i]);
        }
    }
    let mut s = acc.iter().fold(0u64, |a, &b| a.wrapping_add(b));
    for &x in rest {
        s = s.wrapping_add(x);
    }
    s
}

/// Measures read bandwidth with `threads` threads, each streaming `bytes_per_thread` bytes, and
/// keeps the best of `passes` passes (the machine may be shared: the best pass is the one least
/// disturbed by other work).
pub fn measure(threads: usize, bytes_per_thread: usize, passes: usize) -> Bandwidth {
    let threads = threads.max(1);
    let n = (bytes_per_thread / 8).max(8);
    // Distinct non-zero contents so that every page is really allocated and written.
    let bufs: Vec<Vec<u64>> =
        (0..threads).map(|t| (0..n as u64).map(|i| i ^ (t as u64 + 1)).collect()).collect();
    let mut best = f64::INFINITY;
    for _ in 0..passes.max(1) {
        let barrier = Barrier::new(threads + 1);
        let elapsed = std::thread::scope(|s| {
            for b in &bufs {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    black_box(sum(black_box(b)));
                });
            }
            barrier.wait();
            let t0 = Instant::now();
            // the scope joins every thread before returning
            t0
        });
        let secs = elapsed.elapsed().as_secs_f64();
        best = best.min(secs);
    }
    let bytes = threads * n * 8;
    Bandwidth {
        bytes_per_s: bytes as f64 / best,
        threads,
        bytes_per_pass: bytes,
        passes: passes.max(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sum_matches_a_plain_fold() {
        let v: Vec<u64> = (0..1003u64).map(|i| i * 7919).collect();
        assert_eq!(sum(&v), v.iter().fold(0u64, |a, &b| a.wrapping_add(b)));
    }

    #[test]
    fn measures_a_positive_rate() {
        let b = measure(2, 1 << 20, 2);
        assert!(b.bytes_per_s > 0.0 && b.bytes_per_s.is_finite());
        assert_eq!(b.bytes_per_pass, 2 << 20);
    }
}
