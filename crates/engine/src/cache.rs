//! The vision cache: decoded frames and vision features of media items, keyed by content hash
//! and every setting that changes them, bounded by bytes, evicted least-recently-used.

use std::collections::HashMap;
use std::sync::Arc;

use vidlm_decoder::Features;
use vidlm_media_source::{ContentHash, DecodedMedia, FrameSampling};

/// Image or video, and for images whether the conversation has several (OneVision processes
/// those differently, so their features differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ItemKind {
    /// An image; `multi` when its conversation has two or more images.
    Image {
        /// Several images in the conversation.
        multi: bool,
    },
    /// A video.
    Video,
}

/// What a cached item is: its bytes' hash, its kind and the frame sampling (videos).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// BLAKE3 of the media bytes.
    pub hash: ContentHash,
    /// Kind.
    pub kind: ItemKind,
    /// `num_frames`, `fps` (bits) and `max_frames` of the sampling (zeros for images).
    pub sampling: (Option<usize>, Option<u64>, Option<usize>),
}

impl CacheKey {
    /// The key of a media item.
    pub fn new(hash: ContentHash, kind: ItemKind, sampling: &FrameSampling) -> Self {
        let sampling = match kind {
            ItemKind::Video => {
                (sampling.num_frames, sampling.fps.map(f64::to_bits), sampling.max_frames)
            }
            ItemKind::Image { .. } => (None, None, None),
        };
        CacheKey { hash, kind, sampling }
    }
}

/// A cached item: its decoded (sampled) pixels and its vision features.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The decoded pixels (the processor still needs them for the prompt's placeholder counts).
    pub media: DecodedMedia,
    /// The vision features of the item (the rows its placeholders take).
    pub features: Arc<Features>,
}

impl Entry {
    fn bytes(&self) -> usize {
        self.media.bytes() + self.features.data().len() * 4 + 64
    }
}

/// LRU cache bounded by bytes. An entry larger than the whole budget is not kept.
#[derive(Debug)]
pub struct VisionCache {
    budget: usize,
    used: usize,
    tick: u64,
    map: HashMap<CacheKey, (Entry, u64)>,
    /// Look-ups that found an entry.
    pub hits: u64,
    /// Look-ups that did not.
    pub misses: u64,
    /// Entries evicted to make room.
    pub evictions: u64,
}

impl VisionCache {
    /// A cache of at most `budget` bytes (0 disables it).
    pub fn new(budget: usize) -> Self {
        VisionCache {
            budget,
            used: 0,
            tick: 0,
            map: HashMap::new(),
            hits: 0,
            misses: 0,
            evictions: 0,
        }
    }

    /// Bytes held.
    pub fn used(&self) -> usize {
        self.used
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Looks an item up (and marks it recently used).
    pub fn get(&mut self, key: &CacheKey) -> Option<Entry> {
        self.tick += 1;
        let t = self.tick;
        match self.map.get_mut(key) {
            Some((e, used)) => {
                *used = t;
                self.hits += 1;
                Some(e.clone())
            }
            None => {
                self.misses += 1;
                None
            }
        }
    }

    /// Stores an item, evicting least-recently-used entries until it fits.
    pub fn insert(&mut self, key: CacheKey, entry: Entry) {
        let size = entry.bytes();
        if self.budget == 0 || size > self.budget {
            return;
        }
        if let Some((old, _)) = self.map.remove(&key) {
            self.used -= old.bytes();
        }
        while self.used + size > self.budget {
            let Some(oldest) = self.map.iter().min_by_key(|(_, (_, t))| *t).map(|(k, _)| *k) else {
                break;
            };
            if let Some((e, _)) = self.map.remove(&oldest) {
                self.used -= e.bytes();
                self.evictions += 1;
            }
        }
        self.tick += 1;
        self.used += size;
        self.map.insert(key, (entry, self.tick));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    fn entry(bytes: usize) -> Entry {
        Entry {
            media: DecodedMedia::Image(Arc::new(Array3::zeros((1, bytes, 1)))),
            features: Arc::new(Features::empty(4)),
        }
    }

    fn key(n: u8) -> CacheKey {
        CacheKey::new(
            ContentHash([n; 32]),
            ItemKind::Video,
            &FrameSampling { num_frames: Some(4), ..Default::default() },
        )
    }

    #[test]
    fn lru_by_bytes() {
        let mut c = VisionCache::new(3 * (100 + 64));
        for i in 0..3 {
            c.insert(key(i), entry(100));
        }
        assert_eq!(c.len(), 3);
        assert!(c.get(&key(0)).is_some()); // 0 is now the most recent
        c.insert(key(3), entry(100)); // evicts 1, the least recently used
        assert!(c.get(&key(1)).is_none());
        assert!(c.get(&key(0)).is_some() && c.get(&key(2)).is_some() && c.get(&key(3)).is_some());
        assert_eq!(c.evictions, 1);
        assert!(c.used() <= 3 * 164);
        // Too big for the budget: not kept, nothing evicted.
        c.insert(key(9), entry(10_000));
        assert!(c.get(&key(9)).is_none());
        assert_eq!(c.len(), 3);
        // Different sampling or kind: different keys.
        let k = CacheKey::new(
            ContentHash([0; 32]),
            ItemKind::Video,
            &FrameSampling { num_frames: Some(8), ..Default::default() },
        );
        assert_ne!(k, key(0));
        let img = CacheKey::new(
            ContentHash([0; 32]),
            ItemKind::Image { multi: false },
            &FrameSampling { num_frames: Some(4), ..Default::default() },
        );
        assert_eq!(img.sampling, (None, None, None));
    }
}
