//! The one FFI module of xtask (the only file here allowed `unsafe`, see `tidy.rs`): `wait4(2)`,
//! which gives the peak RSS of a benchmarked child process (its rusage) and which std does not
//! expose.

use anyhow::{bail, Result};

/// Waits for `child` (which must not have been waited on) and returns whether it exited with
/// status 0, a description of its status, and its peak resident set size in bytes (`ru_maxrss`;
/// `None` where wait4 is not available).
#[cfg(target_os = "linux")]
pub fn wait_with_rusage(child: &mut std::process::Child) -> Result<(bool, String, Option<u64>)> {
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: `rusage` is plain data that wait4 fills in; `pid` is our own un-reaped child
    // (std's Child is not waited on after this, so the pid is not reused under it).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = loop {
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == -1 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        break r;
    };
    if r != pid {
        bail!("wait4({pid}) failed: {}", std::io::Error::last_os_error());
    }
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    let text = if libc::WIFEXITED(status) {
        format!("exit status {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("wait status {status}")
    };
    // ru_maxrss is in KiB on Linux.
    Ok((ok, text, Some(usage.ru_maxrss.max(0) as u64 * 1024)))
}

/// Without wait4: the exit status only, no peak RSS.
#[cfg(not(target_os = "linux"))]
pub fn wait_with_rusage(child: &mut std::process::Child) -> Result<(bool, String, Option<u64>)> {
    let s = child.wait()?;
    Ok((s.success(), s.to_string(), None))
}
