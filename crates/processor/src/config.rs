//! The model directory's config files: defined (and read, once) in `vidlm-model`
//! ([`vidlm_model::config`], [`vidlm_model::ModelFiles`]); re-exported here.

pub use vidlm_model::config::*;
pub use vidlm_model::ModelFiles;
