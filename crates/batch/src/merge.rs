//! `vidlm batch merge`: joins shard outputs into one file in manifest order, after checking
//! that every record of the manifest has exactly one line and no line is foreign.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{BatchError, Result};
use crate::ids::IdIndex;
use crate::manifest::Manifest;
use crate::output::read_lines;
use crate::shard::Shard;

/// One shard output to merge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardOutput {
    /// The file.
    pub path: PathBuf,
    /// The shard it belongs to, with the shard count (checked: each line's record must be owned
    /// by this shard). `None` when the files were listed without a `{shard}` template.
    pub shard: Option<Shard>,
}

impl ShardOutput {
    /// The outputs of shards `0..count` from a `{shard}` template.
    pub fn from_template(template: &str, count: usize) -> Result<Vec<ShardOutput>> {
        (0..count)
            .map(|i| {
                let shard = Shard::new(i, count)?;
                Ok(ShardOutput { path: shard.path(template)?, shard: Some(shard) })
            })
            .collect()
    }
}

/// What a merge found and wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeReport {
    /// Lines written (= manifest records).
    pub lines: usize,
    /// Of which successes (`status_code` 200).
    pub succeeded: usize,
    /// Of which error lines.
    pub failed: usize,
    /// Shard files read.
    pub shards: usize,
}

#[derive(Debug, Clone, Copy)]
struct Loc {
    file: u32,
    offset: u64,
    len: u32,
}

/// Checks the shard outputs against the manifest and writes them, in manifest order, to
/// `output` (through a temporary file renamed into place, so `output` is whole or absent).
pub fn merge(manifest: &Manifest, inputs: &[ShardOutput], output: &Path) -> Result<MergeReport> {
    if inputs.is_empty() {
        return Err(BatchError::Merge("no shard outputs given".into()));
    }
    let out_abs = std::path::absolute(output).map_err(|e| BatchError::io(output, e))?;
    for i in inputs {
        if std::path::absolute(&i.path).ok().as_deref() == Some(out_abs.as_path()) {
            return Err(BatchError::Merge(format!(
                "the output {} is also an input",
                output.display()
            )));
        }
    }
    let index = IdIndex::scan(manifest)?;
    let mut locs: Vec<Option<Loc>> = vec![None; index.len()];
    let mut ok = vec![false; index.len()];
    let mut files = Vec::with_capacity(inputs.len());
    for (fi, input) in inputs.iter().enumerate() {
        let p = &input.path;
        let mut f = File::open(p).map_err(|e| {
            let hint = input.shard.map(|s| format!(" (run shard {s} first)")).unwrap_or_default();
            BatchError::Merge(format!("cannot open {}: {e}{hint}", p.display()))
        })?;
        let existing = read_lines(p, &mut f)?;
        if existing.torn_bytes > 0 {
            return Err(BatchError::Merge(format!(
                "{} ends with an incomplete line: its run was interrupted; rerun it (it resumes) before merging",
                p.display()
            )));
        }
        for l in existing.lines {
            let Some(rec) = index.record_of(&l.custom_id) else {
                return Err(BatchError::Merge(format!(
                    "{} line {}: custom_id {:?} is not in {}",
                    p.display(),
                    l.line,
                    l.custom_id,
                    manifest.path().display()
                )));
            };
            if let Some(s) = input.shard {
                if !s.owns(rec) {
                    return Err(BatchError::Merge(format!(
                        "{} line {}: custom_id {:?} belongs to shard {}/{} (was this file written with another shard count?)",
                        p.display(),
                        l.line,
                        l.custom_id,
                        Shard::owner(rec, s.count),
                        s.count
                    )));
                }
            }
            if let Some(prev) = locs[rec] {
                let where_ = inputs
                    .get(prev.file as usize)
                    .map(|i| i.path.display().to_string())
                    .unwrap_or_default();
                return Err(BatchError::Merge(format!(
                    "custom_id {:?} has two lines: in {} and {} line {}",
                    l.custom_id,
                    where_,
                    p.display(),
                    l.line
                )));
            }
            let len = u32::try_from(l.len).map_err(|_| {
                BatchError::Merge(format!("{} line {} is too long", p.display(), l.line))
            })?;
            locs[rec] = Some(Loc { file: fi as u32, offset: l.offset, len });
            ok[rec] = l.ok;
        }
        files.push(f);
    }
    let missing: Vec<usize> =
        locs.iter().enumerate().filter(|(_, l)| l.is_none()).map(|(i, _)| i).collect();
    if !missing.is_empty() {
        return Err(missing_error(manifest, inputs, &missing));
    }
    // Write in manifest order.
    let tmp = tmp_path(output);
    let write = || -> std::io::Result<()> {
        let mut w = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        let mut buf = Vec::new();
        for l in locs.iter().flatten() {
            buf.resize(l.len as usize, 0);
            files[l.file as usize].read_exact_at(&mut buf, l.offset)?;
            w.write_all(&buf)?;
        }
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        std::fs::rename(&tmp, output)
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(BatchError::io(output, e));
    }
    let succeeded = ok.iter().filter(|&&b| b).count();
    Ok(MergeReport {
        lines: locs.len(),
        succeeded,
        failed: locs.len() - succeeded,
        shards: inputs.len(),
    })
}

fn tmp_path(output: &Path) -> PathBuf {
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "merged".into());
    output.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

fn missing_error(manifest: &Manifest, inputs: &[ShardOutput], missing: &[usize]) -> BatchError {
    const SHOW: usize = 5;
    let mut ids = Vec::new();
    if let Ok(records) = manifest.records() {
        let mut want = missing.iter().take(SHOW).peekable();
        for r in records.flatten() {
            if want.peek() == Some(&&r.index) {
                ids.push(format!("{:?}", r.custom_id));
                want.next();
                if want.peek().is_none() {
                    break;
                }
            }
        }
    }
    let more = if missing.len() > SHOW {
        format!(", ... ({} in all)", missing.len())
    } else {
        String::new()
    };
    let shards = match inputs.first().and_then(|i| i.shard) {
        Some(s) => {
            let mut owners: Vec<usize> =
                missing.iter().map(|&r| Shard::owner(r, s.count)).collect();
            owners.sort_unstable();
            owners.dedup();
            let list: Vec<String> = owners.iter().map(|o| format!("{o}/{}", s.count)).collect();
            format!("; rerun shard(s) {} (they resume)", list.join(", "))
        }
        None => String::new(),
    };
    BatchError::Merge(format!(
        "{} record(s) of {} have no line: {}{more}{shards}",
        missing.len(),
        manifest.path().display(),
        ids.join(", ")
    ))
}
