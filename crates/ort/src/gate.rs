//! One session run at a time, in arrival order: the CPU's cores go to one parallel run at once.
//!
//! ONNX Runtime splits each operator across its intra-op threads and waits for the slowest one.
//! When two sessions run at the same time on a machine with few cores (the engine's vision worker
//! encoding a video while the decode loop steps the running batch), their threads take turns on
//! the same cores, every operator waits for a thread that was preempted, and the two together take
//! longer than one after the other. Measured on 2 cores with the real-size OneVision-0.5B: 4
//! requests (2 with a video) ran 0.78x as fast concurrently as one at a time.
//!
//! With the gate on, [`enter`] hands out the right to run in FIFO order (a ticket lock), so a
//! decode step and a chunk of frames alternate, each at the speed of the whole machine. It is off
//! by default (one session at a time needs no gate); `vidlm-engine` turns it on for CPU sessions
//! with few cores, and `VIDLM_ORT_EXCLUSIVE_RUNS=0|1` overrides that for measurements.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};

static ENABLED: AtomicBool = AtomicBool::new(false);
static TICKETS: Mutex<(u64, u64)> = Mutex::new((0, 0)); // (next ticket, now serving)
static TURN: Condvar = Condvar::new();

/// Turns the gate on or off for the whole process (`VIDLM_ORT_EXCLUSIVE_RUNS`, when set, wins).
pub fn set_exclusive_runs(on: bool) {
    let on = match std::env::var("VIDLM_ORT_EXCLUSIVE_RUNS").ok().as_deref().map(str::trim) {
        Some("1") | Some("true") => true,
        Some("0") | Some("false") => false,
        _ => on,
    };
    ENABLED.store(on, Ordering::SeqCst);
}

/// Whether session runs wait for their turn.
pub fn exclusive_runs() -> bool {
    ENABLED.load(Ordering::SeqCst)
}

/// The right to run a session, held until dropped.
#[must_use = "the turn ends when the guard is dropped"]
pub struct Turn {
    active: bool,
}

impl Drop for Turn {
    fn drop(&mut self) {
        if self.active {
            let mut t = TICKETS.lock().unwrap_or_else(|p| p.into_inner());
            t.1 += 1;
            drop(t);
            TURN.notify_all();
        }
    }
}

/// Waits for this caller's turn when the gate is on (in the order callers arrived); returns at
/// once when it is off. Hold the result for the duration of one `Session::run`.
pub fn enter() -> Turn {
    if !exclusive_runs() {
        return Turn { active: false };
    }
    let mut t = TICKETS.lock().unwrap_or_else(|p| p.into_inner());
    let mine = t.0;
    t.0 += 1;
    while t.1 != mine {
        t = TURN.wait(t).unwrap_or_else(|p| p.into_inner());
    }
    Turn { active: true }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    /// With the gate on, no two holders overlap, and every caller gets its turn.
    #[test]
    fn turns_do_not_overlap_and_all_are_served() {
        ENABLED.store(true, Ordering::SeqCst);
        let inside = Arc::new(AtomicUsize::new(0));
        let served = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (inside, served) = (inside.clone(), served.clone());
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        let _turn = enter();
                        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two runs at once");
                        std::thread::yield_now();
                        inside.fetch_sub(1, Ordering::SeqCst);
                        served.fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(served.load(Ordering::SeqCst), 200);
        ENABLED.store(false, Ordering::SeqCst);
        // Off: no waiting, nothing counted.
        let before = *TICKETS.lock().unwrap();
        drop(enter());
        assert_eq!(*TICKETS.lock().unwrap(), before);
    }
}
