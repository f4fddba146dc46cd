//! The manifest's ids, kept as 128-bit hashes (16 bytes and a record number per record, however
//! long the ids are): the duplicate check before any work, resume validation and merge order.

use std::hash::{Hash, Hasher};

use crate::error::{BatchError, Result};
use crate::manifest::Manifest;

/// A 128-bit hash of an id (two independently keyed 64-bit hashes). Within one process only.
pub fn id_hash(id: &str) -> u128 {
    let half = |salt: u8| {
        let mut h = std::hash::DefaultHasher::new();
        salt.hash(&mut h);
        id.hash(&mut h);
        h.finish()
    };
    (u128::from(half(0x5a)) << 64) | u128::from(half(0xa5))
}

/// Every record's id hash with its record number, sorted by hash.
#[derive(Debug, Clone, Default)]
pub struct IdIndex {
    entries: Vec<(u128, u64)>,
}

impl IdIndex {
    /// Reads the whole manifest once (streamed): fails on the first unreadable record, or on a
    /// duplicated id (naming it and both places, found with a second pass).
    pub fn scan(manifest: &Manifest) -> Result<IdIndex> {
        let mut entries = Vec::new();
        for r in manifest.records()? {
            let r = r?;
            entries.push((id_hash(&r.custom_id), r.index as u64));
        }
        entries.sort_unstable();
        let mut dups: Vec<u128> =
            entries.windows(2).filter(|w| w[0].0 == w[1].0).map(|w| w[0].0).collect();
        dups.dedup();
        if !dups.is_empty() {
            return Err(duplicate_error(manifest, &dups));
        }
        Ok(IdIndex { entries })
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the manifest has no records.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The record number of `id`, if the manifest has it.
    pub fn record_of(&self, id: &str) -> Option<usize> {
        let h = id_hash(id);
        self.entries.binary_search_by(|e| e.0.cmp(&h)).ok().map(|i| self.entries[i].1 as usize)
    }
}

/// A sorted set of id hashes (the ids already done).
#[derive(Debug, Clone, Default)]
pub struct IdSet {
    hashes: Vec<u128>,
}

impl IdSet {
    /// Builds the set; returns the first hash given twice as `Err`.
    pub fn from_hashes(mut hashes: Vec<u128>) -> std::result::Result<IdSet, u128> {
        hashes.sort_unstable();
        if let Some(w) = hashes.windows(2).find(|w| w[0] == w[1]) {
            return Err(w[0]);
        }
        Ok(IdSet { hashes })
    }

    /// Whether `id` is in the set.
    pub fn contains(&self, id: &str) -> bool {
        self.hashes.binary_search(&id_hash(id)).is_ok()
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }
}

fn duplicate_error(manifest: &Manifest, dups: &[u128]) -> BatchError {
    let mut first_seen: std::collections::HashMap<u128, String> = std::collections::HashMap::new();
    let more = if dups.len() > 1 {
        format!(" (and {} more duplicated ids)", dups.len() - 1)
    } else {
        String::new()
    };
    let records = match manifest.records() {
        Ok(r) => r,
        Err(e) => return e,
    };
    for r in records {
        let Ok(r) = r else { break };
        let h = id_hash(&r.custom_id);
        if dups.binary_search(&h).is_err() {
            continue;
        }
        if let Some(first) = first_seen.get(&h) {
            return BatchError::DuplicateId {
                path: manifest.path().to_path_buf(),
                id: r.custom_id,
                first: first.clone(),
                second: r.location,
                more,
            };
        }
        first_seen.insert(h, r.location);
    }
    BatchError::DuplicateId {
        path: manifest.path().to_path_buf(),
        id: String::from("?"),
        first: String::from("?"),
        second: String::from("?"),
        more,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::ManifestOptions;

    #[test]
    fn hashes_differ_and_repeat() {
        assert_eq!(id_hash("a"), id_hash("a"));
        assert_ne!(id_hash("a"), id_hash("b"));
        assert_ne!(id_hash(""), id_hash("\0"));
        assert!(IdSet::from_hashes(vec![1, 2, 1]).is_err());
        let s = IdSet::from_hashes(vec![id_hash("x"), id_hash("y")]).unwrap();
        assert!(s.contains("x") && !s.contains("z"));
    }

    #[test]
    fn duplicates_are_named_before_work() {
        let dir = std::env::temp_dir().join(format!("vidlm-batch-ids-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("dup.csv");
        std::fs::write(&p, "v,id\na.mp4,1\nb.mp4,2\nc.mp4,1\nd.mp4,2\ne.mp4,3\n").unwrap();
        let opts = ManifestOptions {
            video_column: Some("v".into()),
            id_column: Some("id".into()),
            prompt: Some("x".into()),
            ..Default::default()
        };
        let e = IdIndex::scan(&Manifest::open(&p, &opts).unwrap()).unwrap_err().to_string();
        assert!(
            e.contains(
                "duplicate custom_id \"1\" at line 2 and line 4 (and 1 more duplicated ids)"
            ),
            "{e}"
        );
        std::fs::write(&p, "v,id\na.mp4,1\nb.mp4,2\n").unwrap();
        let idx = IdIndex::scan(&Manifest::open(&p, &opts).unwrap()).unwrap();
        assert_eq!((idx.len(), idx.record_of("2"), idx.record_of("3")), (2, Some(1), None));
    }
}
