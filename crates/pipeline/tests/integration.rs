//! The integration tests of `vidlm-pipeline` as one test binary: each `tests/*.rs` file is a
//! module here (the crate sets `autotests = false`), so the dependencies are linked once
//! instead of once per file. A new test file needs its `mod` line below (`cargo xtask tidy`
//! checks that every file has one).

#[path = "../../decoder/tests/common/mod.rs"]
mod common;
#[path = "support/golden_media.rs"]
mod golden_media;

mod end_to_end;
mod pipeline;
mod placeholders;
mod qwen_vision;
