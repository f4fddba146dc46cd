//! Resolving a model given as a local directory or a Hugging Face hub id.

use std::path::{Path, PathBuf};

use crate::PipelineError;

/// Where and how to look up hub ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HubOptions {
    /// Only use the local Hugging Face cache (no network). Also on when `HF_HUB_OFFLINE=1`.
    pub offline: bool,
    /// Cache directory (default: `HF_HOME/hub` or `~/.cache/huggingface/hub`).
    pub cache_dir: Option<PathBuf>,
    /// Revision (branch, tag or commit; default `main`).
    pub revision: Option<String>,
}

/// Files a model directory must have (relative paths), given the family's needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSet {
    /// Always required.
    pub required: Vec<String>,
    /// Fetched when present.
    pub optional: Vec<String>,
}

impl FileSet {
    /// Adds the external-weight files of every graph (`<graph>.onnx_data`, `_1` … `_7`) as
    /// optional: graphs over 2 GB keep their weights there.
    pub fn add_external_data(&mut self) {
        let graphs: Vec<String> = self
            .required
            .iter()
            .chain(self.optional.iter())
            .filter(|f| f.ends_with(".onnx"))
            .cloned()
            .collect();
        for g in graphs {
            self.optional.push(format!("{g}_data"));
            for i in 1..8 {
                self.optional.push(format!("{g}_data_{i}"));
            }
        }
    }
}

/// The configuration files every model needs besides the graphs.
pub const CONFIG_FILES: &[&str] = &["config.json", "tokenizer.json"];
/// Configuration files used when present.
pub const OPTIONAL_FILES: &[&str] = &[
    "generation_config.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.json",
    "chat_template.jinja",
    "preprocessor_config.json",
    "video_preprocessor_config.json",
    "processor_config.json",
];

fn offline_from_env() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .map(|v| matches!(v.as_str(), "1" | "true" | "TRUE" | "yes" | "ON" | "on"))
        .unwrap_or(false)
}

/// Resolves `model` (a directory, or an `owner/name` hub id) to a local directory holding
/// `files`. For hub ids the files come from the Hugging Face cache (downloading what is missing
/// unless offline); a required file that cannot be found is [`PipelineError::MissingFile`].
pub fn resolve(model: &str, files: &FileSet, opts: &HubOptions) -> Result<PathBuf, PipelineError> {
    let p = Path::new(model);
    if p.is_dir() {
        return Ok(p.to_path_buf());
    }
    let looks_like_id = model.split('/').count() == 2
        && !model.starts_with('.')
        && !model.starts_with('/')
        && !model.contains('\\');
    if !looks_like_id {
        return Err(PipelineError::MissingFile {
            model: model.to_string(),
            file: "(model directory)".into(),
        });
    }
    let cache = match &opts.cache_dir {
        Some(d) => hf_hub::Cache::new(d.clone()),
        None => hf_hub::Cache::from_env(),
    };
    let revision = opts.revision.clone().unwrap_or_else(|| "main".to_string());
    let repo =
        hf_hub::Repo::with_revision(model.to_string(), hf_hub::RepoType::Model, revision.clone());
    let offline = opts.offline || offline_from_env();
    let mut first: Option<PathBuf> = None;
    let fetch = |file: &str| -> Result<Option<PathBuf>, String> {
        if let Some(path) = cache.repo(repo.clone()).get(file) {
            return Ok(Some(path));
        }
        if offline {
            return Ok(None);
        }
        let api = hf_hub::api::sync::ApiBuilder::from_cache(cache.clone())
            .with_progress(false)
            .build()
            .map_err(|e| e.to_string())?;
        match api.repo(repo.clone()).get(file) {
            Ok(p) => Ok(Some(p)),
            Err(e) => Err(e.to_string()),
        }
    };
    for file in &files.required {
        match fetch(file) {
            Ok(Some(path)) => {
                if first.is_none() {
                    first = Some(path);
                }
            }
            Ok(None) => {
                return Err(PipelineError::MissingFile {
                    model: model.to_string(),
                    file: format!(
                        "{file} (not in the local Hugging Face cache {}; offline)",
                        cache.path().display()
                    ),
                })
            }
            Err(e) => {
                return Err(PipelineError::MissingFile {
                    model: model.to_string(),
                    file: format!("{file} ({e})"),
                })
            }
        }
    }
    for file in &files.optional {
        // Absent optional files are fine (404 online, not cached offline).
        let _ = fetch(file);
    }
    // All files of one revision live in the same snapshot directory.
    let first = first.ok_or_else(|| PipelineError::MissingFile {
        model: model.to_string(),
        file: "config.json".into(),
    })?;
    let snapshot = first.parent().map(Path::to_path_buf).ok_or_else(|| {
        PipelineError::MissingFile { model: model.to_string(), file: "config.json".into() }
    })?;
    // config.json sits at the snapshot root (first required file).
    Ok(snapshot)
}
