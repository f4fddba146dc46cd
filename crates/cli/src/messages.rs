//! Reading a chat-messages file (`--messages FILE`): the one rule every subcommand follows.
//!
//! **Relative media paths inside a messages file resolve against the folder of that file**, not
//! the current directory: `q/messages.json` naming `"clip.mkv"` means `q/clip.mkv`, wherever
//! `vidlm` runs from. Paths given on the command line (`--video`, `--image`) resolve against the
//! current directory, like any other command-line path.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// A parsed messages file and the folder its relative media paths resolve against.
#[derive(Debug, Clone)]
pub struct MessagesFile {
    /// The JSON: one conversation (a list of `{role, content}`) or a list of conversations.
    pub json: serde_json::Value,
    /// The folder of the file (absolute when the file's path could be made absolute).
    pub base_dir: PathBuf,
}

impl MessagesFile {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let json =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        Ok(MessagesFile { json, base_dir: base_dir_of(path) })
    }
}

/// The folder that relative paths inside the file at `path` resolve against.
pub fn base_dir_of(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    match abs.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_dir_is_the_files_folder() {
        assert_eq!(base_dir_of(Path::new("/data/q/messages.json")), PathBuf::from("/data/q"));
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(base_dir_of(Path::new("messages.json")), cwd);
        assert_eq!(base_dir_of(Path::new("q/messages.json")), cwd.join("q"));
    }
}
