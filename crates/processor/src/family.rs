//! The family table lives in `vidlm-model` ([`vidlm_model::family`]); re-exported here with the
//! processor's resolved settings.

pub use crate::settings::VisionSettings;
pub use vidlm_model::family::*;
