//! # vidlm-batch — resumable, sharded batch inference over large video collections
//!
//! `vidlm batch` runs a manifest of requests through a model and writes one OpenAI Batch output
//! line per request. This crate is that runner:
//!
//! * **Manifests** ([`manifest`]): OpenAI Batch input JSONL, whose bodies mean exactly what they
//!   mean to `vidlm serve` (`vidlm-openai` parses them, `vidlm-media-source` applies the media
//!   rules); or plain JSONL / CSV / Parquet manifests of videos with a video column, an
//!   optional id column and a prompt. Streamed record by record, never loaded whole.
//! * **Ids** ([`ids`]): every `custom_id` is checked for duplicates before any work starts.
//! * **Shards** ([`shard`]): `--shard I/N`, `JOB_COMPLETION_INDEX` with `--num-shards`,
//!   `SLURM_ARRAY_TASK_ID` / `SLURM_ARRAY_TASK_COUNT`; record `k` belongs to shard `k mod N`.
//!   Output paths may contain `{shard}`; [`merge`] joins shard outputs in manifest order and
//!   checks that nothing is missing or doubled.
//! * **Crash safety** ([`output`]): one locked, append-only file per shard; one `write` and one
//!   `fdatasync` per line; a rerun skips every `custom_id` that has a complete line and cuts a
//!   torn last line, so after `kill -9` at any moment the rerun ends with exactly one line per
//!   input.
//! * **Throughput** ([`run`]): requests go to one `vidlm-engine` `Engine` (the scheduler of
//!   `vidlm serve`): its media workers decode, preprocess and encode ahead of the decode loop,
//!   which batches continuously; a bounded window of requests in flight; progress on stderr
//!   ([`progress`]) and an end [`Summary`].
//!
//! A record's own problem (missing file, corrupt video, bad body, prompt too long) becomes its
//! error line — the status code and `{"error": ...}` body the server would answer — and the
//! run goes on. Only problems that leave a record without an id, or the run without its output
//! file or model, stop it ([`BatchError`]).
//!
//! ```
//! use vidlm_batch::manifest::{Manifest, ManifestOptions, RequestSource};
//! use vidlm_batch::{ids::IdIndex, Shard};
//!
//! let dir = std::env::temp_dir().join(format!("vidlm-batch-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let csv = dir.join("clips.csv");
//! std::fs::write(&csv, "clip,question\ncats.mp4,What are the cats doing?\ndogs.mp4,\nbirds.mp4,How many birds?\n")?;
//! let opts = ManifestOptions {
//!     video_column: Some("clip".into()),
//!     prompt_column: Some("question".into()),
//!     prompt: Some("Describe this video.".into()),
//!     ..Default::default()
//! };
//! let manifest = Manifest::open(&csv, &opts)?;
//! // Every id is read (streamed) and checked for duplicates before any work.
//! let index = IdIndex::scan(&manifest)?;
//! assert_eq!(index.len(), 3);
//! // Shard 1 of 2 owns records 1, 3, 5, ...
//! let shard = Shard::parse("1/2")?;
//! let mine: Vec<_> = manifest.records()?.filter_map(Result::ok).filter(|r| shard.owns(r.index)).collect();
//! assert_eq!(mine.len(), 1);
//! assert_eq!(mine[0].custom_id, "dogs.mp4");
//! assert_eq!(
//!     mine[0].request,
//!     RequestSource::Video { video: "dogs.mp4".into(), prompt: "Describe this video.".into() }
//! );
//! assert_eq!(shard.path("captions-{shard}.jsonl")?.to_str(), Some("captions-1.jsonl"));
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Running a model over a manifest ([`run::run`]) needs a model directory:
//!
//! ```no_run
//! use vidlm_batch::run::{run, RunOptions};
//!
//! let mut opts = RunOptions::new("assets/demo-model", "requests.jsonl", "out/results-{shard}.jsonl");
//! opts.shard = vidlm_batch::Shard::parse("0/4")?;
//! opts.media = vidlm_openai::MediaPolicy::default().with_local_path("videos").map_err(|e| e.to_string())?;
//! let summary = run(&opts)?;
//! eprintln!("{summary}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

pub mod error;
pub mod ids;
pub mod lines;
pub mod manifest;
pub mod merge;
pub mod output;
pub mod progress;
pub mod run;
pub mod shard;

pub use error::{BatchError, Result};
pub use progress::{ProgressMode, Summary};
pub use shard::{Shard, ShardSource};
