//! Deterministic sharding: which input records a shard owns, where its settings come from, and
//! `{shard}` output paths.
//!
//! Shard `I` of `N` owns the records whose 0-based position in the manifest is `I` modulo `N`.
//! Every shard reads the same manifest, so the shares are disjoint, cover every record, differ
//! in size by at most one, and spread a manifest's runs of long (or broken) videos over all
//! shards.

use std::path::PathBuf;

use crate::error::{BatchError, Result};

/// One shard of a batch: `index` of `count` (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This shard, `0..count`.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

/// The placeholder that output paths may contain.
pub const SHARD_PLACEHOLDER: &str = "{shard}";

impl Default for Shard {
    fn default() -> Self {
        Shard::ALL
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Where a shard setting came from (for messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardSource {
    /// No sharding: the whole input.
    None,
    /// `--shard I/N`.
    Flag,
    /// `JOB_COMPLETION_INDEX` (Kubernetes Indexed Job) with `--num-shards`.
    Kubernetes,
    /// `SLURM_ARRAY_TASK_ID` / `SLURM_ARRAY_TASK_COUNT` (a Slurm job array).
    Slurm,
}

impl Shard {
    /// The whole input as one shard.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// A shard, checking `index < count`.
    pub fn new(index: usize, count: usize) -> Result<Shard> {
        if count == 0 {
            return Err(BatchError::Shard("the number of shards must be at least 1".into()));
        }
        if index >= count {
            return Err(BatchError::Shard(format!("shard index {index} is not below the number of shards {count} (indices are 0-based)")));
        }
        Ok(Shard { index, count })
    }

    /// Parses `I/N` (0-based `I`).
    ///
    /// ```
    /// use vidlm_batch::Shard;
    /// assert_eq!(Shard::parse("2/3").unwrap(), Shard { index: 2, count: 3 });
    /// assert!(Shard::parse("3/3").is_err());
    /// assert!(Shard::parse("1").is_err());
    /// ```
    pub fn parse(s: &str) -> Result<Shard> {
        let bad = || {
            BatchError::Shard(format!("--shard {s:?}: expected I/N, e.g. 0/4 (0-based I below N)"))
        };
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let i: usize = i.trim().parse().map_err(|_| bad())?;
        let n: usize = n.trim().parse().map_err(|_| bad())?;
        Shard::new(i, n)
    }

    /// The shard to run: `--shard I/N` if given; else the index from `JOB_COMPLETION_INDEX`
    /// (or a Slurm array task id) with `--num-shards N`; else a Slurm job array
    /// (`SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN` of `SLURM_ARRAY_TASK_COUNT`); else the whole
    /// input. `env` looks variables up (pass `|k| std::env::var(k).ok()`).
    pub fn resolve(
        flag: Option<&str>,
        num_shards: Option<usize>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<(Shard, ShardSource)> {
        if let Some(s) = flag {
            if num_shards.is_some() {
                return Err(BatchError::Shard(
                    "give either --shard I/N or --num-shards N, not both".into(),
                ));
            }
            return Ok((Shard::parse(s)?, ShardSource::Flag));
        }
        let var = |k: &str| -> Result<Option<usize>> {
            match env(k) {
                None => Ok(None),
                Some(v) if v.trim().is_empty() => Ok(None),
                Some(v) => v.trim().parse::<usize>().map(Some).map_err(|_| {
                    BatchError::Shard(format!("{k}={v:?} is not a non-negative integer"))
                }),
            }
        };
        let slurm_index = || -> Result<Option<usize>> {
            match var("SLURM_ARRAY_TASK_ID")? {
                None => Ok(None),
                Some(id) => {
                    let min = var("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
                    id.checked_sub(min).map(Some).ok_or_else(|| {
                        BatchError::Shard(format!(
                            "SLURM_ARRAY_TASK_ID {id} is below SLURM_ARRAY_TASK_MIN {min}"
                        ))
                    })
                }
            }
        };
        if let Some(n) = num_shards {
            if let Some(i) = var("JOB_COMPLETION_INDEX")? {
                return Ok((Shard::new(i, n)?, ShardSource::Kubernetes));
            }
            if let Some(i) = slurm_index()? {
                return Ok((Shard::new(i, n)?, ShardSource::Slurm));
            }
            return Err(BatchError::Shard(format!(
                "--num-shards {n} needs the shard index from JOB_COMPLETION_INDEX (Kubernetes Indexed Job) or SLURM_ARRAY_TASK_ID; neither is set (use --shard I/{n} to give it yourself)"
            )));
        }
        if let Some(i) = slurm_index()? {
            let n = var("SLURM_ARRAY_TASK_COUNT")?.ok_or_else(|| {
                BatchError::Shard("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not (give --num-shards N)".into())
            })?;
            return Ok((Shard::new(i, n)?, ShardSource::Slurm));
        }
        Ok((Shard::ALL, ShardSource::None))
    }

    /// Whether the record at 0-based manifest position `record` belongs to this shard.
    pub fn owns(&self, record: usize) -> bool {
        record % self.count == self.index
    }

    /// The shard that owns record `record`.
    pub fn owner(record: usize, count: usize) -> usize {
        record % count.max(1)
    }

    /// Number of records this shard owns out of `total`.
    pub fn share(&self, total: usize) -> usize {
        total / self.count + usize::from(self.index < total % self.count)
    }

    /// `template` with `{shard}` replaced by this shard's index, or the path as given when it
    /// has no `{shard}` (job arrays pass each task its own literal path,
    /// `--output out-$SLURM_ARRAY_TASK_ID.jsonl`). Two processes never write one file at once:
    /// the output's exclusive lock (`OutputFile::open`) refuses the second at once, and a
    /// file's existing lines must belong to the shard that resumes it.
    ///
    /// ```
    /// use vidlm_batch::Shard;
    /// let s = Shard::parse("1/3").unwrap();
    /// assert_eq!(s.path("out/captions-{shard}.jsonl").unwrap().to_str(), Some("out/captions-1.jsonl"));
    /// assert_eq!(s.path("out/captions-7.jsonl").unwrap().to_str(), Some("out/captions-7.jsonl"));
    /// assert_eq!(vidlm_batch::Shard::ALL.path("out/captions.jsonl").unwrap().to_str(), Some("out/captions.jsonl"));
    /// ```
    pub fn path(&self, template: &str) -> Result<PathBuf> {
        Ok(PathBuf::from(shard_path(template, self.index)))
    }
}

/// `template` with every `{shard}` replaced by `index`.
pub fn shard_path(template: &str, index: usize) -> String {
    template.replace(SHARD_PLACEHOLDER, &index.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn parse_and_own() {
        assert_eq!(Shard::parse(" 0 / 1 ").ok(), Some(Shard::ALL));
        for bad in ["", "1", "a/2", "1/0", "2/2", "-1/2", "1/2/3"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        // Shares are disjoint, cover everything, and differ by at most one.
        let total = 200;
        let mut seen = vec![0; total];
        for i in 0..3 {
            let s = Shard::new(i, 3).unwrap();
            let mine: Vec<usize> = (0..total).filter(|&r| s.owns(r)).collect();
            assert_eq!(mine.len(), s.share(total));
            for r in mine {
                seen[r] += 1;
                assert_eq!(Shard::owner(r, 3), i);
            }
        }
        assert!(seen.iter().all(|&c| c == 1));
        assert_eq!([0, 1, 2].map(|i| Shard::new(i, 3).unwrap().share(200)), [67, 67, 66]);
    }

    #[test]
    fn resolve_from_flags_and_env() {
        let none = env(&[]);
        assert_eq!(Shard::resolve(None, None, &none).unwrap(), (Shard::ALL, ShardSource::None));
        assert_eq!(
            Shard::resolve(Some("1/4"), None, &none).unwrap(),
            (Shard { index: 1, count: 4 }, ShardSource::Flag)
        );
        assert!(Shard::resolve(Some("1/4"), Some(4), &none).is_err());
        // --num-shards without an index source.
        assert!(Shard::resolve(None, Some(4), &none).is_err());
        let k8s = env(&[("JOB_COMPLETION_INDEX", "3")]);
        assert_eq!(
            Shard::resolve(None, Some(4), &k8s).unwrap(),
            (Shard { index: 3, count: 4 }, ShardSource::Kubernetes)
        );
        assert!(Shard::resolve(None, Some(3), &k8s).is_err());
        // The flag wins over the environment.
        assert_eq!(
            Shard::resolve(Some("0/2"), None, &k8s).unwrap().0,
            Shard { index: 0, count: 2 }
        );
        // Slurm arrays may start at 1 (--array=1-8).
        let slurm = env(&[
            ("SLURM_ARRAY_TASK_ID", "5"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "8"),
        ]);
        assert_eq!(
            Shard::resolve(None, None, &slurm).unwrap(),
            (Shard { index: 4, count: 8 }, ShardSource::Slurm)
        );
        assert_eq!(
            Shard::resolve(None, Some(16), &slurm).unwrap().0,
            Shard { index: 4, count: 16 }
        );
        assert!(Shard::resolve(None, None, env(&[("SLURM_ARRAY_TASK_ID", "2")])).is_err());
        assert!(Shard::resolve(None, Some(2), env(&[("JOB_COMPLETION_INDEX", "x")])).is_err());
    }

    #[test]
    fn paths() {
        let s = Shard::new(2, 3).unwrap();
        assert_eq!(
            s.path("/o/{shard}/out-{shard}.jsonl").unwrap(),
            PathBuf::from("/o/2/out-2.jsonl")
        );
        assert_eq!(s.path("/o/out.jsonl").unwrap(), PathBuf::from("/o/out.jsonl"));
        assert_eq!(
            Shard::ALL.path("/o/out-{shard}.jsonl").unwrap(),
            PathBuf::from("/o/out-0.jsonl")
        );
    }
}
