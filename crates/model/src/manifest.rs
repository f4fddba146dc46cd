//! `onnx/vidlm_manifest.json`: what `cargo xtask export` wrote (family, versions, graphs and
//! their precisions, validation). Informational; the runtime reads the graphs' interfaces from
//! the sessions.

use crate::error::ModelError;
use crate::precision::{Graph, Precision};
use serde::Deserialize;
use std::collections::BTreeMap;

/// The manifest file, relative to the model directory.
pub const MANIFEST_FILE: &str = "onnx/vidlm_manifest.json";

/// `onnx/vidlm_manifest.json` (the fields vidlm reads; others are ignored).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Manifest {
    /// `"vidlm-onnx/1"`.
    pub format: Option<String>,
    /// The family's `model_type`.
    pub family: Option<String>,
    /// Human-readable family name.
    pub family_name: Option<String>,
    /// The transformers model class exported.
    pub model_class: Option<String>,
    /// Where the weights came from.
    pub source: Option<String>,
    /// The suffix of each precision exported (checked against [`Precision::suffix`]).
    #[serde(default)]
    pub precision_suffixes: BTreeMap<Precision, String>,
    /// The graphs written.
    #[serde(default)]
    pub graphs: Vec<ManifestGraph>,
    /// `image_newline` weights file (in `onnx/`), for the families that have one.
    pub image_newline: Option<String>,
    /// Per dtype the export holds for some graph: the precision each graph runs at when that
    /// dtype is asked for (the nearest one written along [`Precision::fallback`]'s chain), e.g.
    /// `{"q4": {"vision_encoder": "q8", "embed_tokens": "q4", ...}}`. Absent in older exports;
    /// [`crate::ModelFiles::resolve_precisions`] then walks the chain over the files present.
    #[serde(default)]
    pub dtype_fallback: BTreeMap<Precision, BTreeMap<Graph, Precision>>,
}

/// One exported graph.
#[derive(Debug, Clone, Deserialize)]
pub struct ManifestGraph {
    /// Which graph.
    pub name: Graph,
    /// Its precision.
    pub dtype: Precision,
    /// Its file name in `onnx/`.
    pub file: String,
    /// External data file, for graphs over 2 GB.
    #[serde(default)]
    pub external_data: Option<serde_json::Value>,
}

impl Manifest {
    /// Parses and checks a manifest: every precision's suffix and every graph's file name must be
    /// the ones [`Precision::suffix`] and [`Graph::file`] give.
    pub fn parse(text: &str) -> Result<Manifest, ModelError> {
        let m: Manifest = crate::config::parse_json(text, MANIFEST_FILE)?;
        for (p, s) in &m.precision_suffixes {
            if s != p.suffix() {
                return Err(ModelError::InvalidField {
                    file: MANIFEST_FILE.into(),
                    field: "precision_suffixes".into(),
                    message: format!("{p} has suffix {s:?}, expected {:?}", p.suffix()),
                });
            }
        }
        for g in &m.graphs {
            let want = g.name.file(g.dtype);
            if Some(g.file.as_str()) != want.strip_prefix("onnx/") {
                return Err(ModelError::InvalidField {
                    file: MANIFEST_FILE.into(),
                    field: "graphs".into(),
                    message: format!(
                        "{} {} is in {:?}, expected {want:?}",
                        g.name, g.dtype, g.file
                    ),
                });
            }
        }
        for (want, graphs) in &m.dtype_fallback {
            for (g, used) in graphs {
                if !want.chain().contains(used) {
                    return Err(ModelError::InvalidField {
                        file: MANIFEST_FILE.into(),
                        field: "dtype_fallback".into(),
                        message: format!(
                            "{want}: {g} uses {used}, which is not on {want}'s fallback chain"
                        ),
                    });
                }
            }
        }
        Ok(m)
    }

    /// The precisions the manifest lists for `graph`.
    pub fn precisions(&self, graph: Graph) -> Vec<Precision> {
        let mut v: Vec<Precision> =
            self.graphs.iter().filter(|g| g.name == graph).map(|g| g.dtype).collect();
        v.sort();
        v.dedup();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_precisions_and_checked_suffixes() {
        let m = Manifest::parse(
            r#"{"format": "vidlm-onnx/1", "precision_suffixes": {"fp32": "", "fp16": "_fp16"},
                "graphs": [{"name": "embed_tokens", "dtype": "fp16", "file": "embed_tokens_fp16.onnx"},
                           {"name": "embed_tokens", "dtype": "fp32", "file": "embed_tokens.onnx", "inputs": []}]}"#,
        )
        .unwrap();
        assert_eq!(m.precisions(Graph::EmbedTokens), vec![Precision::Fp32, Precision::Fp16]);
        assert!(m.precisions(Graph::VideoEncoder).is_empty());
        let bad = Manifest::parse(r#"{"precision_suffixes": {"fp16": "_half"}}"#).unwrap_err();
        assert!(matches!(bad, ModelError::InvalidField { .. }), "{bad}");
        let bad = Manifest::parse(
            r#"{"graphs": [{"name": "embed_tokens", "dtype": "q4", "file": "embed_tokens.onnx"}]}"#,
        )
        .unwrap_err();
        assert!(matches!(bad, ModelError::InvalidField { .. }), "{bad}");
        assert!(matches!(
            Manifest::parse(r#"{"graphs": [{"name": "x", "dtype": "fp32", "file": "x.onnx"}]}"#),
            Err(ModelError::Json { .. })
        ));
        let m = Manifest::parse(
            r#"{"dtype_fallback": {"q4": {"vision_encoder": "q8", "decoder_model_merged": "q4"}}}"#,
        )
        .unwrap();
        assert_eq!(m.dtype_fallback[&Precision::Q4][&Graph::VisionEncoder], Precision::Q8);
        let bad =
            Manifest::parse(r#"{"dtype_fallback": {"q8": {"vision_encoder": "q4"}}}"#).unwrap_err();
        assert!(matches!(bad, ModelError::InvalidField { .. }), "{bad}");
    }
}
