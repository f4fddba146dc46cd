//! The graphs of vidlm's ONNX layout and their precision variants.
//!
//! File names follow transformers.js: `onnx/<graph><suffix>.onnx` with the suffix of the
//! precision (`""` fp32, `_fp16`, `_quantized` q8, `_int8`, `_q4`, `_q4f16`). A model directory may hold
//! several variants of each graph; [`crate::ModelFiles::precisions`] lists what is there.
//!
//! **Fallback.** An export need not hold every graph at every precision (a 4-bit vision tower that
//! misses its fidelity bound is not written). A graph asked for at a precision the export lacks
//! uses the nearest one it holds along [`Precision::fallback`]'s chain: q4 → q8 → fp32,
//! q4f16 → fp16 → fp32, q8 → fp32, fp16 → fp32. The export records the outcome per dtype in its
//! manifest (`dtype_fallback`); without that field the same chain runs over the files present
//! ([`crate::ModelFiles::resolve_precisions`]).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A precision variant of a graph.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Precision {
    /// float32 weights and activations (no suffix).
    #[default]
    Fp32,
    /// float16 (`_fp16`).
    Fp16,
    /// 8-bit weight quantization (`_quantized`; transformers.js calls it `q8`).
    Q8,
    /// int8 weights and int8 activations quantized at run time (`_int8`, transformers.js' name):
    /// `DynamicQuantizeMatMul`, integer arithmetic on VNNI / AMX CPUs.
    Int8,
    /// 4-bit weights, float32 activations (`_q4`).
    Q4,
    /// 4-bit weights, float16 activations (`_q4f16`).
    Q4f16,
}

impl Precision {
    /// Every precision, in order of decreasing size.
    pub const ALL: [Precision; 6] = [
        Precision::Fp32,
        Precision::Fp16,
        Precision::Q8,
        Precision::Int8,
        Precision::Q4,
        Precision::Q4f16,
    ];

    /// The file-name suffix (`""`, `"_fp16"`, `"_quantized"`, `"_int8"`, `"_q4"`, `"_q4f16"`).
    pub fn suffix(self) -> &'static str {
        match self {
            Precision::Fp32 => "",
            Precision::Fp16 => "_fp16",
            Precision::Q8 => "_quantized",
            Precision::Int8 => "_int8",
            Precision::Q4 => "_q4",
            Precision::Q4f16 => "_q4f16",
        }
    }

    /// The name (`fp32`, `fp16`, `q8`, `int8`, `q4`, `q4f16`), as `--dtype` and the manifest spell it.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Fp16 => "fp16",
            Precision::Q8 => "q8",
            Precision::Int8 => "int8",
            Precision::Q4 => "q4",
            Precision::Q4f16 => "q4f16",
        }
    }

    /// The next precision of the fallback chain (q4 → q8 → fp32, int8 → q8 → fp32, q4f16 → fp16
    /// → fp32, q8 → fp32, fp16 → fp32); `None` for fp32.
    pub fn fallback(self) -> Option<Precision> {
        match self {
            Precision::Fp32 => None,
            Precision::Fp16 | Precision::Q8 => Some(Precision::Fp32),
            Precision::Q4 | Precision::Int8 => Some(Precision::Q8),
            Precision::Q4f16 => Some(Precision::Fp16),
        }
    }

    /// `self` and then every precision of its fallback chain, nearest first
    /// (`q4` → `[q4, q8, fp32]`).
    pub fn chain(self) -> Vec<Precision> {
        std::iter::successors(Some(self), |p| p.fallback()).collect()
    }

    /// The precision whose file-name suffix is `suffix`.
    pub fn from_suffix(suffix: &str) -> Option<Precision> {
        Precision::ALL.into_iter().find(|p| p.suffix() == suffix)
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown precision name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown precision {0:?} (expected fp32, fp16, q8, int8, q4 or q4f16)")]
pub struct UnknownPrecision(pub String);

impl FromStr for Precision {
    type Err = UnknownPrecision;
    /// Parses a name (`fp32`, `fp16`, `q8` or its file name `quantized`, `q4`, `q4f16`).
    fn from_str(s: &str) -> Result<Self, UnknownPrecision> {
        match s.to_ascii_lowercase().as_str() {
            "fp32" | "float32" => Ok(Precision::Fp32),
            "fp16" | "float16" => Ok(Precision::Fp16),
            "q8" | "quantized" => Ok(Precision::Q8),
            "int8" => Ok(Precision::Int8),
            "q4" => Ok(Precision::Q4),
            "q4f16" => Ok(Precision::Q4f16),
            _ => Err(UnknownPrecision(s.to_string())),
        }
    }
}

/// A graph of vidlm's ONNX layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Graph {
    /// `vision_encoder`: pixels → projected features per image / patch / frame.
    VisionEncoder,
    /// `video_encoder`: a video's frames → its features (families with a video tower or pooling).
    VideoEncoder,
    /// `embed_tokens`: token ids → embeddings.
    EmbedTokens,
    /// `decoder_model_merged`: the language model with its KV cache.
    DecoderModelMerged,
}

impl Graph {
    /// Every graph.
    pub const ALL: [Graph; 4] =
        [Graph::VisionEncoder, Graph::VideoEncoder, Graph::EmbedTokens, Graph::DecoderModelMerged];

    /// The file stem (`vision_encoder`, …).
    pub fn name(self) -> &'static str {
        match self {
            Graph::VisionEncoder => "vision_encoder",
            Graph::VideoEncoder => "video_encoder",
            Graph::EmbedTokens => "embed_tokens",
            Graph::DecoderModelMerged => "decoder_model_merged",
        }
    }

    /// The path of a variant relative to the model directory: `onnx/<name><suffix>.onnx`.
    pub fn file(self, precision: Precision) -> String {
        format!("onnx/{}{}.onnx", self.name(), precision.suffix())
    }
}

impl fmt::Display for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which precision of each graph to load (`vision` covers `vision_encoder` and `video_encoder`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Precisions {
    /// `vision_encoder` and `video_encoder`.
    pub vision: Precision,
    /// `embed_tokens`.
    pub embed: Precision,
    /// `decoder_model_merged`.
    pub decoder: Precision,
}

impl Precisions {
    /// The same precision for every graph (`vidlm run --dtype q4`).
    pub fn all(p: Precision) -> Precisions {
        Precisions { vision: p, embed: p, decoder: p }
    }

    /// The precision selected for `graph`.
    pub fn of(&self, graph: Graph) -> Precision {
        match graph {
            Graph::VisionEncoder | Graph::VideoEncoder => self.vision,
            Graph::EmbedTokens => self.embed,
            Graph::DecoderModelMerged => self.decoder,
        }
    }
}

/// The precisions a load asked for and the ones it uses (after the fallback chain), per graph.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ResolvedPrecisions {
    /// What was asked for (`--dtype`).
    pub requested: Precisions,
    /// What each graph runs at.
    pub used: Precisions,
}

impl ResolvedPrecisions {
    /// Whether some graph runs at another precision than asked for.
    pub fn fell_back(&self) -> bool {
        self.requested != self.used
    }
}

impl fmt::Display for ResolvedPrecisions {
    /// One line: `q4` when every graph runs at the one precision asked for, else each graph's
    /// (`q4: vision q8 (no q4 graph), embed q4, decoder q4`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.requested;
        let u = self.used;
        let uniform = r.vision == r.embed && r.embed == r.decoder;
        if uniform && !self.fell_back() {
            return write!(f, "{}", r.decoder);
        }
        if uniform {
            write!(f, "{}: ", r.decoder)?;
        }
        let parts = [
            ("vision", r.vision, u.vision),
            ("embed", r.embed, u.embed),
            ("decoder", r.decoder, u.decoder),
        ];
        for (i, (name, want, used)) in parts.into_iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{name} {used}")?;
            if used == Precision::Int8 && want != Precision::Int8 {
                f.write_str(" (int8 compute)")?;
            } else if want != used {
                write!(f, " (no {want} graph)")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_suffixes_and_parsing_round_trip() {
        for p in Precision::ALL {
            assert_eq!(p.name().parse::<Precision>(), Ok(p));
            assert_eq!(p.to_string(), p.name());
            assert_eq!(Precision::from_suffix(p.suffix()), Some(p));
            assert_eq!(
                serde_json::to_value(p).ok(),
                Some(serde_json::Value::String(p.name().into()))
            );
        }
        assert_eq!("quantized".parse::<Precision>(), Ok(Precision::Q8));
        assert!("int3".parse::<Precision>().is_err());
        assert_eq!(
            Graph::DecoderModelMerged.file(Precision::Q4f16),
            "onnx/decoder_model_merged_q4f16.onnx"
        );
        assert_eq!(Graph::VisionEncoder.file(Precision::Fp32), "onnx/vision_encoder.onnx");
        assert_eq!(Precisions::all(Precision::Q4).of(Graph::VideoEncoder), Precision::Q4);
    }

    #[test]
    fn fallback_chains_end_at_fp32() {
        use Precision::*;
        assert_eq!(Q4.chain(), vec![Q4, Q8, Fp32]);
        assert_eq!(Q4f16.chain(), vec![Q4f16, Fp16, Fp32]);
        assert_eq!(Q8.chain(), vec![Q8, Fp32]);
        assert_eq!(Int8.chain(), vec![Int8, Q8, Fp32]);
        assert_eq!(Fp16.chain(), vec![Fp16, Fp32]);
        assert_eq!(Fp32.chain(), vec![Fp32]);
        let same = ResolvedPrecisions { requested: Precisions::all(Q4), used: Precisions::all(Q4) };
        assert_eq!(same.to_string(), "q4");
        let fell = ResolvedPrecisions {
            requested: Precisions::all(Q4),
            used: Precisions { vision: Q8, ..Precisions::all(Q4) },
        };
        assert!(fell.fell_back());
        assert_eq!(fell.to_string(), "q4: vision q8 (no q4 graph), embed q4, decoder q4");
        let mixed = ResolvedPrecisions {
            requested: Precisions { vision: Fp32, ..Precisions::all(Q8) },
            used: Precisions { vision: Fp32, ..Precisions::all(Q8) },
        };
        assert_eq!(mixed.to_string(), "vision fp32, embed q8, decoder q8");
    }
}
