//! The integration tests of `vidlm` as one test binary: each `tests/*.rs` file is a
//! module here (the crate sets `autotests = false`), so the dependencies are linked once
//! instead of once per file. A new test file needs its `mod` line below (`cargo xtask tidy`
//! checks that every file has one).

#[cfg(feature = "batch")]
mod batch;
mod budgets;
mod cli;
mod internal_failure;
mod preprocess;
mod preprocess_qwen;
mod run;
#[cfg(feature = "serve")]
mod serve_openai;
