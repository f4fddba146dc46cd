//! The model directory, read once: [`ModelFiles::read`] is vidlm's only reader of the Hugging
//! Face files; the processor, vision, the decoder and the pipeline take what it parsed.
//!
//! Two layouts are read:
//! * **hub**: `preprocessor_config.json` (image processor), `video_preprocessor_config.json`,
//!   `processor_config.json` (processor attributes only), `chat_template.json`;
//! * **transformers 5 `save_pretrained`**: image/video processor settings nested in
//!   `processor_config.json` under `"image_processor"` / `"video_processor"`, template in
//!   `chat_template.jinja`.
//!
//! Priority for the video processor follows `VideoProcessorMixin.get_video_processor_dict`:
//! `processor_config.json["video_processor"]` → `video_preprocessor_config.json` →
//! `preprocessor_config.json`. For the image processor: `processor_config.json["image_processor"]`
//! → `preprocessor_config.json`. For the template: `chat_template.jinja` → `chat_template.json` →
//! `processor_config.json["chat_template"]` → `tokenizer_config.json["chat_template"]`.

use crate::config::{
    read_json_opt, read_text, template_from_value, ChatTemplateJson, GenerationConfig, ModelConfig,
    ProcessorConfig, TokenizerConfig, VisionProcessorConfig,
};
use crate::error::{ModelError, DIRECTORY};
use crate::family::{Family, FamilySpec, GraphUse};
use crate::manifest::{Manifest, MANIFEST_FILE};
use crate::precision::{Graph, Precision, Precisions, ResolvedPrecisions};
use std::path::{Path, PathBuf};

/// Every config file of a model directory, parsed.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    /// The directory.
    pub dir: PathBuf,
    /// `config.json`.
    pub config: ModelConfig,
    /// `processor_config.json` (empty if absent; the nested v5 processor objects are moved to
    /// [`Self::image_processor`] / [`Self::video_processor`]).
    pub processor: ProcessorConfig,
    /// Image processor settings and the file they came from.
    pub image_processor: Option<(VisionProcessorConfig, String)>,
    /// Video processor settings and the file they came from.
    pub video_processor: Option<(VisionProcessorConfig, String)>,
    /// `tokenizer_config.json` (empty if absent).
    pub tokenizer_config: TokenizerConfig,
    /// Path of `tokenizer.json`, if the directory has one.
    pub tokenizer_json: Option<PathBuf>,
    /// The chat template and the file it came from.
    pub chat_template: Option<(String, String)>,
    /// `generation_config.json` (defaults if absent).
    pub generation: GenerationConfig,
    /// `onnx/vidlm_manifest.json`, if present.
    pub manifest: Option<Manifest>,
}

impl ModelFiles {
    /// Reads every file of `dir` (either layout). Only `config.json` is required here; what else
    /// a user of the files needs, it checks (naming the file).
    pub fn read(dir: impl AsRef<Path>) -> Result<ModelFiles, ModelError> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(ModelError::MissingFile { dir: dir.to_path_buf(), file: DIRECTORY.into() });
        }
        let config: ModelConfig = read_json_opt(dir, "config.json")?.ok_or_else(|| {
            ModelError::MissingFile { dir: dir.to_path_buf(), file: "config.json".into() }
        })?;
        let mut processor: ProcessorConfig =
            read_json_opt(dir, "processor_config.json")?.unwrap_or_default();
        let (image_processor, video_processor) = Self::vision_processors(dir, &mut processor)?;
        let tokenizer_config: TokenizerConfig =
            read_json_opt(dir, "tokenizer_config.json")?.unwrap_or_default();
        let tokenizer_json = Some(dir.join("tokenizer.json")).filter(|p| p.is_file());
        let chat_template = Self::chat_template(dir, &processor, &tokenizer_config)?;
        let generation = read_json_opt(dir, "generation_config.json")?.unwrap_or_default();
        let manifest_path = dir.join(MANIFEST_FILE);
        let manifest = if manifest_path.is_file() {
            Some(Manifest::parse(&read_text(&manifest_path)?)?)
        } else {
            None
        };
        Ok(ModelFiles {
            dir: dir.to_path_buf(),
            config,
            processor,
            image_processor,
            video_processor,
            tokenizer_config,
            tokenizer_json,
            chat_template,
            generation,
            manifest,
        })
    }

    /// The image and video processor configs, from whichever file holds them.
    #[allow(clippy::type_complexity)]
    fn vision_processors(
        dir: &Path,
        processor: &mut ProcessorConfig,
    ) -> Result<
        (Option<(VisionProcessorConfig, String)>, Option<(VisionProcessorConfig, String)>),
        ModelError,
    > {
        let preprocessor: Option<VisionProcessorConfig> =
            read_json_opt(dir, "preprocessor_config.json")?;
        let video_pre: Option<VisionProcessorConfig> =
            read_json_opt(dir, "video_preprocessor_config.json")?;
        let image = match (processor.image_processor.take(), preprocessor.clone()) {
            (Some(p), _) => Some((p, "processor_config.json[image_processor]".to_string())),
            (None, Some(p)) => Some((p, "preprocessor_config.json".to_string())),
            (None, None) => None,
        };
        let video = match (processor.video_processor.take(), video_pre) {
            (Some(p), _) => Some((p, "processor_config.json[video_processor]".to_string())),
            (None, Some(p)) => Some((p, "video_preprocessor_config.json".to_string())),
            // As in `get_video_processor_dict`, `preprocessor_config.json` serves as the video
            // config when there is no other (Qwen2.5-VL's checkpoints rely on it).
            (None, None) => preprocessor.map(|p| (p, "preprocessor_config.json".to_string())),
        };
        Ok((image, video))
    }

    /// The chat template and the file it came from.
    fn chat_template(
        dir: &Path,
        processor: &ProcessorConfig,
        tokenizer_config: &TokenizerConfig,
    ) -> Result<Option<(String, String)>, ModelError> {
        let jinja = dir.join("chat_template.jinja");
        Ok(if jinja.is_file() {
            Some((read_text(&jinja)?, "chat_template.jinja".to_string()))
        } else if let Some(t) = read_json_opt::<ChatTemplateJson>(dir, "chat_template.json")? {
            Some((
                template_from_value(&t.chat_template, "chat_template.json")?,
                "chat_template.json".to_string(),
            ))
        } else if let Some(t) = processor.chat_template.clone() {
            Some((t, "processor_config.json".to_string()))
        } else if let Some(v) = &tokenizer_config.chat_template {
            Some((
                template_from_value(v, "tokenizer_config.json")?,
                "tokenizer_config.json".to_string(),
            ))
        } else {
            None
        })
    }

    /// The model's family (from `config.json`'s `model_type`, then `architectures`).
    pub fn family(&self) -> Result<Family, ModelError> {
        let archs = self.config.architectures.as_deref().unwrap_or_default();
        Family::detect(self.config.model_type.as_deref(), archs)
    }

    /// The family's row of the table.
    pub fn spec(&self) -> Result<&'static FamilySpec, ModelError> {
        self.family().map(Family::spec)
    }

    /// Path of a graph variant: `dir/onnx/<graph><suffix>.onnx` (whether or not it exists).
    pub fn graph_path(&self, graph: Graph, precision: Precision) -> PathBuf {
        self.dir.join(graph.file(precision))
    }

    /// The precisions of `graph` the directory actually has (files on disk), in
    /// [`Precision::ALL`] order.
    pub fn precisions(&self, graph: Graph) -> Vec<Precision> {
        Precision::ALL.into_iter().filter(|&p| self.graph_path(graph, p).is_file()).collect()
    }

    /// The precision each graph runs at when `requested` is asked for: the nearest one the
    /// directory holds along [`Precision::fallback`]'s chain (q4 → q8 → fp32, q4f16 → fp16 →
    /// fp32), as the manifest's `dtype_fallback` records it where the export wrote one (and the
    /// file is there), else found from the files present. `vision` covers `vision_encoder` and
    /// `video_encoder` together: a precision serves it only if every vision graph the family
    /// reads exists at it. A precision that no graph of the directory has is kept as asked (the
    /// caller then reports the missing file): only a dtype the export holds for some graph falls
    /// back.
    pub fn resolve_precisions(&self, requested: &Precisions) -> ResolvedPrecisions {
        let exists = |g: Graph, p: Precision| self.graph_path(g, p).is_file();
        let video_use = self.spec().map(|s| s.video_encoder).unwrap_or(GraphUse::Optional);
        let any_video = !self.precisions(Graph::VideoEncoder).is_empty();
        let vision_ok = |p: Precision| {
            exists(Graph::VisionEncoder, p)
                && match video_use {
                    GraphUse::Required => exists(Graph::VideoEncoder, p),
                    GraphUse::Optional => !any_video || exists(Graph::VideoEncoder, p),
                    GraphUse::Unused => true,
                }
        };
        let pick = |want: Precision, graph: Graph, ok: &dyn Fn(Precision) -> bool| {
            if !Graph::ALL.into_iter().any(|g| exists(g, want)) {
                return want;
            }
            let recorded = self
                .manifest
                .as_ref()
                .and_then(|m| m.dtype_fallback.get(&want))
                .and_then(|m| m.get(&graph))
                .copied()
                .filter(|&p| ok(p));
            recorded.or_else(|| want.chain().into_iter().find(|&p| ok(p))).unwrap_or(want)
        };
        let used = Precisions {
            vision: pick(requested.vision, Graph::VisionEncoder, &vision_ok),
            embed: pick(requested.embed, Graph::EmbedTokens, &|p| exists(Graph::EmbedTokens, p)),
            decoder: pick(requested.decoder, Graph::DecoderModelMerged, &|p| {
                exists(Graph::DecoderModelMerged, p)
            }),
        };
        ResolvedPrecisions { requested: *requested, used }
    }

    /// `resolved` with every graph that runs at q8 moved to its `int8` variant where the export has
    /// one (`_int8`: int8 activations × int8 weights, `DynamicQuantizeMatMul`): the caller's choice
    /// for CPUs with VNNI / AMX, where that arithmetic is native and 8-bit weight-only graphs would
    /// dequantize to float32 for many rows. Vision towers at q4 move too: they run hundreds of
    /// rows per image, where 4-bit weights dequantize to float32 just the same, so the int8 graph
    /// is both faster (3.4× on next-video-7b-2l's towers on an AMX host) and nearer fp32, for
    /// 8-bit instead of 4-bit weights in the towers only. The decoder stays at q4 (one row per
    /// decode step, where 4-bit weights are what makes it fast). The vision towers move
    /// together, as in [`Self::resolve_precisions`].
    pub fn prefer_int8(&self, resolved: ResolvedPrecisions) -> ResolvedPrecisions {
        let exists = |g: Graph| self.graph_path(g, Precision::Int8).is_file();
        let video_use = self.spec().map(|s| s.video_encoder).unwrap_or(GraphUse::Optional);
        let vision_ok = exists(Graph::VisionEncoder)
            && match video_use {
                GraphUse::Required => exists(Graph::VideoEncoder),
                GraphUse::Optional => {
                    self.precisions(Graph::VideoEncoder).is_empty() || exists(Graph::VideoEncoder)
                }
                GraphUse::Unused => true,
            };
        let swap =
            |p: Precision, ok: bool| if p == Precision::Q8 && ok { Precision::Int8 } else { p };
        let swap_vision = |p: Precision| match p {
            Precision::Q4 if vision_ok => Precision::Int8,
            p => swap(p, vision_ok),
        };
        let u = resolved.used;
        ResolvedPrecisions {
            requested: resolved.requested,
            used: Precisions {
                vision: swap_vision(u.vision),
                embed: swap(u.embed, exists(Graph::EmbedTokens)),
                decoder: swap(u.decoder, exists(Graph::DecoderModelMerged)),
            },
        }
    }

    /// The precisions of every graph the directory has at least one variant of.
    pub fn available_graphs(&self) -> Vec<(Graph, Vec<Precision>)> {
        Graph::ALL
            .into_iter()
            .map(|g| (g, self.precisions(g)))
            .filter(|(_, p)| !p.is_empty())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("vidlm-model-files-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("onnx")).unwrap();
        d
    }

    #[test]
    fn reads_both_layouts_and_lists_precisions() {
        let d = scratch("v5");
        std::fs::write(
            d.join("config.json"),
            r#"{"model_type": "llava_onevision", "text_config": {"max_position_embeddings": 64}}"#,
        )
        .unwrap();
        std::fs::write(
            d.join("processor_config.json"),
            r#"{"num_image_tokens": 729, "image_processor": {"size": {"height": 384, "width": 384}},
                "video_processor": {"video_processor_type": "LlavaOnevisionVideoProcessor"}}"#,
        )
        .unwrap();
        std::fs::write(d.join("chat_template.jinja"), "{{ messages }}").unwrap();
        for f in ["vision_encoder.onnx", "vision_encoder_q4.onnx", "embed_tokens_fp16.onnx"] {
            std::fs::write(d.join("onnx").join(f), b"").unwrap();
        }
        let m = ModelFiles::read(&d).unwrap();
        assert_eq!(m.family().unwrap(), Family::Onevision);
        assert_eq!(m.config.text().max_position_embeddings, Some(64));
        assert_eq!(
            m.image_processor.as_ref().map(|p| p.1.as_str()),
            Some("processor_config.json[image_processor]")
        );
        assert_eq!(
            m.video_processor.as_ref().map(|p| p.1.as_str()),
            Some("processor_config.json[video_processor]")
        );
        assert!(m.processor.image_processor.is_none());
        assert_eq!(m.chat_template.as_ref().map(|t| t.1.as_str()), Some("chat_template.jinja"));
        assert!(m.tokenizer_json.is_none());
        assert_eq!(m.precisions(Graph::VisionEncoder), vec![Precision::Fp32, Precision::Q4]);
        assert_eq!(
            m.available_graphs(),
            vec![
                (Graph::VisionEncoder, vec![Precision::Fp32, Precision::Q4]),
                (Graph::EmbedTokens, vec![Precision::Fp16])
            ]
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn precisions_fall_back_along_the_chain() {
        use Precision::*;
        let d = scratch("fallback");
        std::fs::write(d.join("config.json"), r#"{"model_type": "llava_onevision"}"#).unwrap();
        // An export made with --dtype fp32,q8,q4 whose vision towers have no q4 graph.
        for g in ["vision_encoder", "video_encoder", "embed_tokens", "decoder_model_merged"] {
            for s in ["", "_quantized"] {
                std::fs::write(d.join("onnx").join(format!("{g}{s}.onnx")), b"").unwrap();
            }
        }
        for f in ["embed_tokens_q4.onnx", "decoder_model_merged_q4.onnx"] {
            std::fs::write(d.join("onnx").join(f), b"").unwrap();
        }
        let m = ModelFiles::read(&d).unwrap();
        let r = m.resolve_precisions(&Precisions::all(Q4));
        assert_eq!(r.used, Precisions { vision: Q8, embed: Q4, decoder: Q4 });
        assert_eq!(r.to_string(), "q4: vision q8 (no q4 graph), embed q4, decoder q4");
        assert!(!m.resolve_precisions(&Precisions::all(Q8)).fell_back());
        // A dtype no graph has is kept as asked (the loader names the missing file).
        assert_eq!(m.resolve_precisions(&Precisions::all(Fp16)).used, Precisions::all(Fp16));
        // q4f16 -> fp16 -> fp32 where only some graphs have q4f16.
        std::fs::write(d.join("onnx/decoder_model_merged_q4f16.onnx"), b"").unwrap();
        let r = m.resolve_precisions(&Precisions::all(Q4f16));
        assert_eq!(r.used, Precisions { vision: Fp32, embed: Fp32, decoder: Q4f16 });
        // A video tower missing at q8 keeps the vision graphs together on fp32.
        std::fs::remove_file(d.join("onnx/video_encoder_quantized.onnx")).unwrap();
        assert_eq!(m.resolve_precisions(&Precisions::all(Q4)).used.vision, Fp32);
        // int8 compute: graphs at q8 move to their `_int8` variant where there is one.
        std::fs::write(d.join("onnx/vision_encoder_int8.onnx"), b"").unwrap();
        std::fs::write(d.join("onnx/video_encoder_int8.onnx"), b"").unwrap();
        std::fs::write(d.join("onnx/video_encoder_quantized.onnx"), b"").unwrap();
        let r = m.prefer_int8(m.resolve_precisions(&Precisions::all(Q8)));
        assert_eq!(r.used, Precisions { vision: Int8, embed: Q8, decoder: Q8 });
        assert_eq!(r.to_string(), "q8: vision int8 (int8 compute), embed q8, decoder q8");
        let r = m.prefer_int8(m.resolve_precisions(&Precisions::all(Q4)));
        assert_eq!(r.used, Precisions { vision: Int8, embed: Q4, decoder: Q4 });
        assert_eq!(m.prefer_int8(m.resolve_precisions(&Precisions::all(Fp32))).used.vision, Fp32);
        // Vision towers exported at q4 also take int8; the decoder keeps its q4.
        std::fs::write(d.join("onnx/vision_encoder_q4.onnx"), b"").unwrap();
        std::fs::write(d.join("onnx/video_encoder_q4.onnx"), b"").unwrap();
        let m = ModelFiles::read(&d).unwrap();
        assert_eq!(m.resolve_precisions(&Precisions::all(Q4)).used.vision, Q4);
        let r = m.prefer_int8(m.resolve_precisions(&Precisions::all(Q4)));
        assert_eq!(r.used, Precisions { vision: Int8, embed: Q4, decoder: Q4 });
        assert_eq!(r.to_string(), "q4: vision int8 (int8 compute), embed q4, decoder q4");
        std::fs::remove_file(d.join("onnx/vision_encoder_q4.onnx")).unwrap();
        std::fs::remove_file(d.join("onnx/video_encoder_q4.onnx")).unwrap();
        std::fs::remove_file(d.join("onnx/video_encoder_quantized.onnx")).unwrap();
        // The manifest's record wins where its file exists.
        std::fs::write(
            d.join(MANIFEST_FILE),
            r#"{"dtype_fallback": {"q4": {"embed_tokens": "fp32", "vision_encoder": "q8"}}}"#,
        )
        .unwrap();
        let m = ModelFiles::read(&d).unwrap();
        let r = m.resolve_precisions(&Precisions::all(Q4));
        assert_eq!(r.used, Precisions { vision: Fp32, embed: Fp32, decoder: Q4 });
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn missing_and_malformed_files_are_named() {
        let d = scratch("bad");
        assert!(
            matches!(ModelFiles::read(&d), Err(ModelError::MissingFile { ref file, .. }) if file == "config.json")
        );
        std::fs::write(d.join("config.json"), r#"{"model_type": "bert"}"#).unwrap();
        let m = ModelFiles::read(&d).unwrap();
        assert!(matches!(m.family(), Err(ModelError::UnsupportedModel { .. })));
        std::fs::write(d.join("preprocessor_config.json"), "{").unwrap();
        assert!(
            matches!(ModelFiles::read(&d), Err(ModelError::Json { ref file, .. }) if file == "preprocessor_config.json")
        );
        let e = ModelFiles::read(d.join("nope")).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::NotFound);
        let _ = std::fs::remove_dir_all(&d);
    }
}
