//! The step table of `cargo xtask test` and its background lane.
//!
//! CI runs on 2 cores. The cargo builds keep both busy most of the time, but the Python half of
//! the run (installing the venv, the test videos, `fixtures --check`, which mostly waits on the
//! network or runs one Python thread) does not. So `test` runs those steps, and the fuzz targets'
//! build after them, in a [`Lane`]: one background thread that runs them one after the other,
//! each as a child process (`xtask <subcommand>`) whose output goes to one log file, while the
//! main thread builds. The main thread joins the lane before the first step that needs its
//! results (the test run), and stops early when a lane step fails.
//!
//! [`Steps`] records every step of both lanes with its wall time; the table printed at the end
//! names the lane of each step, and its total is the wall-clock time of the whole run (the steps
//! of the two lanes overlap, so their sum would overstate it).

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Which lane ran a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Where {
    /// The main thread (the cargo builds and every test run).
    Main,
    /// The background lane (Python set-up, videos, fixtures, fuzz build).
    Background,
}

/// One finished step: its name, lane, start (since the run began), wall time and outcome.
#[derive(Clone, Debug)]
struct Record {
    name: String,
    lane: Where,
    start: Duration,
    took: Duration,
    failed: bool,
}

/// The steps of one `cargo xtask test` run, both lanes, in the order they started.
#[derive(Clone)]
pub struct Steps {
    begun: Instant,
    records: Arc<Mutex<Vec<Record>>>,
}

impl Steps {
    /// A run that starts now.
    pub fn new() -> Steps {
        Steps { begun: Instant::now(), records: Arc::new(Mutex::new(Vec::new())) }
    }

    fn record(&self, name: &str, lane: Where, start: Instant, failed: bool) -> Duration {
        let took = start.elapsed();
        let tag = if lane == Where::Background { " (background)" } else { "" };
        eprintln!(
            "[test] step {name}{tag}: {:.0} s{}",
            took.as_secs_f64(),
            if failed { " (failed)" } else { "" }
        );
        let rec = Record {
            name: name.to_string(),
            lane,
            start: start.duration_since(self.begun),
            took,
            failed,
        };
        self.records.lock().unwrap_or_else(|e| e.into_inner()).push(rec);
        took
    }

    /// Runs one main-lane step, printing a line when it ends.
    pub fn time<T>(&self, name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let start = Instant::now();
        let r = f();
        self.record(name, Where::Main, start, r.is_err());
        r
    }

    /// Prints the table: every step by start time, its lane and seconds; the total is the wall
    /// clock since [`Steps::new`].
    pub fn table(&self) {
        let mut recs = self.records.lock().unwrap_or_else(|e| e.into_inner()).clone();
        recs.sort_by_key(|r| r.start);
        eprintln!("[test] | step | lane | start (s) | seconds |");
        eprintln!("[test] | --- | --- | ---: | ---: |");
        for r in &recs {
            let lane = match r.lane {
                Where::Main => "main",
                Where::Background => "background",
            };
            eprintln!(
                "[test] | {}{} | {lane} | {:.0} | {:.0} |",
                r.name,
                if r.failed { " (failed)" } else { "" },
                r.start.as_secs_f64(),
                r.took.as_secs_f64()
            );
        }
        eprintln!(
            "[test] | total (wall clock; background steps overlap the main ones) | | | {:.0} |",
            self.begun.elapsed().as_secs_f64()
        );
    }
}

/// What the lane shares with the main thread.
struct Shared {
    /// The child process now running, so that [`Lane::stop`] can end it.
    child: Mutex<Option<Child>>,
    stop: AtomicBool,
    /// The name of the step that failed, if one did.
    failed: Mutex<Option<String>>,
}

/// A background lane: steps (`xtask` subcommands) run one after the other in a thread, their
/// output appended to one log file.
pub struct Lane {
    shared: Arc<Shared>,
    handle: Option<JoinHandle<()>>,
    log: PathBuf,
}

impl Lane {
    /// Starts the lane: each `(name, xtask arguments)` in turn, stopping at the first failure.
    /// The steps run a private copy of this executable (the main lane's build may replace
    /// `target/debug/xtask` meanwhile) and write to `log` (truncated first).
    pub fn start(
        steps: &Steps,
        work: &Path,
        log: PathBuf,
        jobs: Vec<(&'static str, Vec<String>)>,
    ) -> Result<Lane> {
        std::fs::create_dir_all(work).with_context(|| format!("creating {}", work.display()))?;
        let me = std::env::current_exe().context("the path of xtask")?;
        let exe = work.join(format!("xtask{}", std::env::consts::EXE_SUFFIX));
        let _ = std::fs::remove_file(&exe);
        std::fs::copy(&me, &exe)
            .with_context(|| format!("copying {} to {}", me.display(), exe.display()))?;
        std::fs::write(&log, b"").with_context(|| format!("creating {}", log.display()))?;
        eprintln!(
            "[test] background lane: {} (output in {})",
            jobs.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(" → "),
            log.display()
        );
        let shared = Arc::new(Shared {
            child: Mutex::new(None),
            stop: AtomicBool::new(false),
            failed: Mutex::new(None),
        });
        let (sh, st, lg) = (shared.clone(), steps.clone(), log.clone());
        let handle = std::thread::spawn(move || {
            for (name, args) in jobs {
                if sh.stop.load(Ordering::SeqCst) {
                    return;
                }
                let start = Instant::now();
                let ok = run_logged(&sh, &exe, &args, &lg, name);
                if sh.stop.load(Ordering::SeqCst) {
                    return;
                }
                st.record(name, Where::Background, start, !ok);
                if !ok {
                    *sh.failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(name.to_string());
                    return;
                }
            }
        });
        Ok(Lane { shared, handle: Some(handle), log })
    }

    /// Fails (after stopping the lane and printing its log's tail) when a lane step failed.
    pub fn check(&mut self) -> Result<()> {
        let failed = self.shared.failed.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(name) = failed {
            self.stop();
            print_tail(&self.log, 150);
            bail!("background step `{name}` failed (full output in {})", self.log.display());
        }
        Ok(())
    }

    /// Waits for every lane step; fails as [`Lane::check`] does. On success prints the lines of
    /// the log that the steps themselves wrote (`[videos] …`, `[fixtures] …`, tables), not the
    /// libraries' progress and INFO noise.
    pub fn join(&mut self) -> Result<()> {
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.check()?;
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        eprintln!(
            "[test] background lane done; its summary (full output in {}):",
            self.log.display()
        );
        for l in text.lines() {
            let t = l.trim_start();
            if (t.starts_with('[') && !t.starts_with("[export]   done")) || t.starts_with('|') {
                eprintln!("    {l}");
            }
        }
        Ok(())
    }

    /// Ends the running step's process and skips the rest.
    pub fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(c) = self.shared.child.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            // The step's own children first (`xtask fixtures` runs Python), then the step.
            let pids: Vec<String> = descendants(c.id()).iter().map(|p| p.to_string()).collect();
            if !pids.is_empty() {
                let _ = Command::new("kill").arg("-TERM").args(&pids).status();
            }
            let _ = c.kill();
        }
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Lane {
    fn drop(&mut self) {
        // A main-lane failure returns early: the lane's process must not outlive the run.
        if self.handle.is_some() {
            self.stop();
        }
    }
}

/// Runs `exe args` with stdout and stderr appended to `log`; true when it succeeded.
fn run_logged(sh: &Shared, exe: &Path, args: &[String], log: &Path, name: &str) -> bool {
    let open = || std::fs::OpenOptions::new().append(true).open(log);
    let (Ok(mut out), Ok(err)) = (open(), open()) else {
        return false;
    };
    use std::io::Write;
    let _ = writeln!(out, "\n[test] background step {name}: xtask {}", args.join(" "));
    let child = Command::new(exe).args(args).stdin(Stdio::null()).stdout(out).stderr(err).spawn();
    let Ok(child) = child else {
        return false;
    };
    *sh.child.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
    // Poll, so that `stop` can take the lock and kill the child meanwhile.
    loop {
        let mut guard = sh.child.lock().unwrap_or_else(|e| e.into_inner());
        let Some(c) = guard.as_mut() else { return false };
        match c.try_wait() {
            Ok(Some(status)) => {
                *guard = None;
                return status.success();
            }
            Ok(None) => {}
            Err(_) => return false,
        }
        drop(guard);
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The processes below `pid` (children, grandchildren, ...), from `/proc` (none elsewhere).
fn descendants(pid: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .map(|r| {
            r.filter_map(|e| {
                let e = e.ok()?;
                let p: u32 = e.file_name().to_str()?.parse().ok()?;
                let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
                // `pid (comm) state ppid ...`: comm may hold spaces, so read after its `)`.
                let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()?;
                Some((p, ppid))
            })
            .collect()
        })
        .unwrap_or_default();
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for (c, pp) in &parents {
            if *pp == p && !out.contains(c) {
                out.push(*c);
                frontier.push(*c);
            }
        }
    }
    out
}

fn print_tail(log: &Path, n: usize) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(n)..];
    eprintln!("[test] the last {} lines of {}:", tail.len(), log.display());
    for l in tail {
        eprintln!("    {l}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lane runs its steps in order, logs their output, records them, and stops at the first
    /// failure, which `check` reports. (The steps are this test binary: `--list` succeeds, an
    /// unknown flag fails.)
    #[test]
    fn lane_runs_in_order_and_stops_at_a_failure() {
        let work = std::env::temp_dir().join(format!("vidlm-xtask-lane-{}", std::process::id()));
        let log = work.join("lane.log");
        let steps = Steps::new();
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let mut lane = Lane::start(
            &steps,
            &work,
            log.clone(),
            vec![
                ("list", args(&["--list"])),
                ("bad", args(&["--no-such-flag"])),
                ("never", args(&["--list"])),
            ],
        )
        .unwrap();
        let err = lane.join().unwrap_err().to_string();
        assert!(err.contains("`bad` failed"), "{err}");
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("lane_runs_in_order_and_stops_at_a_failure: test"), "{text}");
        assert!(text.contains("background step bad"), "{text}");
        assert!(!text.contains("background step never"), "{text}");
        let recs = steps.records.lock().unwrap().clone();
        let names: Vec<(&str, bool)> = recs.iter().map(|r| (r.name.as_str(), r.failed)).collect();
        assert_eq!(names, vec![("list", false), ("bad", true)]);
        assert!(recs.iter().all(|r| r.lane == Where::Background));
        let _ = std::fs::remove_dir_all(&work);
    }
}
