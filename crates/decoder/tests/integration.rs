//! The integration tests of `vidlm-decoder` as one test binary: each `tests/*.rs` file is a
//! module here (the crate sets `autotests = false`), so the dependencies are linked once
//! instead of once per file. A new test file needs its `mod` line below (`cargo xtask tidy`
//! checks that every file has one).

mod common;

mod batching;
mod cuda_graph;
mod embedding;
mod generation;
mod kv_cache;
mod mrope;
