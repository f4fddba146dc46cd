//! The crash-safe, append-only output file.
//!
//! * One process at a time: the file is opened with an exclusive, non-blocking `flock`
//!   ([`BatchError::OutputLocked`] otherwise), so a retried shard cannot race its predecessor.
//! * Each result is one `write(2)` of a whole line ending in `\n` to a file opened with
//!   `O_APPEND`, then `fdatasync`: after `kill -9` (or a power cut) every line that was reported
//!   written is on disk, and at most the last line is torn.
//! * On open, the existing lines are read back: every line that ends in `\n` is complete and its
//!   `custom_id` is done; a torn tail (bytes after the last `\n`) is cut off, so its request runs
//!   again and gets exactly one line.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{BatchError, Result};

/// Longest output line read back on resume or merge (a chat completion is far smaller).
pub const MAX_OUTPUT_LINE_BYTES: usize = 256 << 20;

/// A complete line already in an output file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingLine {
    /// Its `custom_id`.
    pub custom_id: String,
    /// 1-based line number.
    pub line: usize,
    /// Byte offset of the line in the file.
    pub offset: u64,
    /// Its length in bytes, `\n` included.
    pub len: u64,
    /// Whether it is a success (`response.status_code` 200).
    pub ok: bool,
}

/// What [`read_lines`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Existing {
    /// The complete lines.
    pub lines: Vec<ExistingLine>,
    /// Bytes after the last complete line (a line torn by a crash), 0 if none.
    pub torn_bytes: u64,
    /// Offset where the complete lines end.
    pub complete_len: u64,
}

/// Reads an output file's complete lines (`custom_id` and success of each). A complete line
/// that is not a batch output line is an error (the file is not ours, or was edited).
pub fn read_lines(path: &Path, file: &mut File) -> Result<Existing> {
    file.seek(SeekFrom::Start(0)).map_err(|e| BatchError::io(path, e))?;
    let mut reader = BufReader::with_capacity(1 << 16, &mut *file);
    let mut out = Existing::default();
    let mut buf = Vec::new();
    let mut offset = 0u64;
    let mut line = 0usize;
    loop {
        buf.clear();
        let n = (&mut reader)
            .take(MAX_OUTPUT_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|e| BatchError::io(path, e))?;
        if n == 0 {
            break;
        }
        line += 1;
        if buf.last() != Some(&b'\n') {
            if n > MAX_OUTPUT_LINE_BYTES {
                return Err(BatchError::Output {
                    path: path.into(),
                    message: format!("line {line} is longer than {MAX_OUTPUT_LINE_BYTES} bytes"),
                });
            }
            // The tail after the last newline: a torn line. Anything after it would be a bug.
            out.torn_bytes = n as u64;
            break;
        }
        let bad = |why: &str| {
            BatchError::Output {
            path: path.into(),
            message: format!("line {line} is not a vidlm batch output line ({why}); refusing to append to this file"),
        }
        };
        let v: Value = serde_json::from_slice(&buf).map_err(|e| bad(&e.to_string()))?;
        let custom_id = v
            .get("custom_id")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("no custom_id"))?
            .to_string();
        let ok = v.pointer("/response/status_code").and_then(Value::as_u64) == Some(200);
        out.lines.push(ExistingLine { custom_id, line, offset, len: n as u64, ok });
        offset += n as u64;
    }
    out.complete_len = offset;
    Ok(out)
}

/// An output file opened for appending (locked).
#[derive(Debug)]
pub struct OutputFile {
    path: PathBuf,
    file: File,
    sync: bool,
    written: usize,
}

impl OutputFile {
    /// Opens (or creates, with its folder) `path` for appending, takes its lock, reads the lines
    /// already there and cuts off a torn last line. `sync` makes every line durable
    /// (`fdatasync`) before [`OutputFile::append`] returns.
    pub fn open(path: &Path, sync: bool) -> Result<(OutputFile, Existing)> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| BatchError::io(dir, e))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| BatchError::io(path, e))?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                return Err(BatchError::OutputLocked { path: path.into() })
            }
            // Some network file systems cannot lock: go on without (say so).
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot lock the output file; make sure only one process writes it")
            }
        }
        let existing = read_lines(path, &mut file)?;
        if existing.torn_bytes > 0 {
            tracing::warn!(path = %path.display(), bytes = existing.torn_bytes, "cutting off a torn last line (an interrupted run); its request runs again");
            file.set_len(existing.complete_len).map_err(|e| BatchError::io(path, e))?;
            file.sync_all().map_err(|e| BatchError::io(path, e))?;
        }
        Ok((OutputFile { path: path.into(), file, sync, written: 0 }, existing))
    }

    /// Appends one line (`line` must not contain a newline; one is added) in a single write.
    pub fn append(&mut self, line: &str) -> Result<()> {
        if line.contains('\n') {
            return Err(BatchError::Output {
                path: self.path.clone(),
                message: "internal error: an output line contains a newline".into(),
            });
        }
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        self.file.write_all(&buf).map_err(|e| BatchError::io(&self.path, e))?;
        if self.sync {
            self.file.sync_data().map_err(|e| BatchError::io(&self.path, e))?;
        }
        self.written += 1;
        Ok(())
    }

    /// Lines appended by this process.
    pub fn written(&self) -> usize {
        self.written
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vidlm-batch-output-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join(name);
        let _ = std::fs::remove_file(&p);
        p
    }

    fn line(id: &str, status: u64) -> String {
        serde_json::json!({"id": "x", "custom_id": id, "response": {"status_code": status, "body": {}}, "error": null}).to_string()
    }

    #[test]
    fn append_resume_and_torn_tail() {
        let p = tmp("out.jsonl");
        {
            let (mut o, ex) = OutputFile::open(&p, true).unwrap();
            assert!(ex.lines.is_empty());
            o.append(&line("a", 200)).unwrap();
            o.append(&line("b", 400)).unwrap();
            assert!(o.append("x\ny").is_err());
        }
        // A crash in the middle of the third line's write.
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(&line("c", 200).as_bytes()[..20]).unwrap();
        drop(f);
        let (mut o, ex) = OutputFile::open(&p, false).unwrap();
        let ids: Vec<(&str, bool)> =
            ex.lines.iter().map(|l| (l.custom_id.as_str(), l.ok)).collect();
        assert_eq!(ids, [("a", true), ("b", false)]);
        assert_eq!(ex.torn_bytes, 20);
        o.append(&line("c", 200)).unwrap();
        drop(o);
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text, format!("{}\n{}\n{}\n", line("a", 200), line("b", 400), line("c", 200)));
    }

    #[test]
    fn one_writer_at_a_time() {
        let p = tmp("locked.jsonl");
        let (_o, _) = OutputFile::open(&p, false).unwrap();
        let e = OutputFile::open(&p, false).unwrap_err();
        assert!(matches!(e, BatchError::OutputLocked { .. }), "{e}");
    }

    #[test]
    fn foreign_files_are_refused() {
        let p = tmp("foreign.jsonl");
        std::fs::write(&p, "hello\n").unwrap();
        let e = OutputFile::open(&p, false).unwrap_err().to_string();
        assert!(e.contains("line 1 is not a vidlm batch output line"), "{e}");
        std::fs::write(&p, "{\"a\": 1}\n").unwrap();
        assert!(OutputFile::open(&p, false).is_err());
    }
}
