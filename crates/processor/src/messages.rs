//! The transformers chat-messages format.
//!
//! ```json
//! [{"role": "user", "content": [
//!     {"type": "video", "video": "cats.mp4"},
//!     {"type": "image", "path": "dog.png"},
//!     {"type": "text", "text": "What do they have in common?"}]}]
//! ```
//!
//! `content` is a string or a list of parts. Image parts take their source from the first of
//! `image`, `url`, `path`, `base64`; video parts from `video`, `url`, `path` (a string, or a list of
//! frame image paths). OpenAI `{"type": "image_url", "image_url": {"url": …}}` parts are
//! normalised to image parts, and keys whose value is `null` are dropped, as transformers does.
//! Already-decoded media are attached with [`Conversation::push`].

use crate::error::{ProcessorError, Result};
use ndarray::Array4;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use vidlm_model::{DecodedMedia, MediaKind};

/// Where an image comes from.
#[derive(Debug, Clone)]
pub enum ImageInput {
    /// A file.
    Path(PathBuf),
    /// A URL (not fetched by this crate: yields an error).
    Url(String),
    /// Base64 data (not decoded by this crate: yields an error).
    Base64(String),
}

/// Where a video comes from.
#[derive(Debug, Clone)]
pub enum VideoInput {
    /// A video file.
    Path(PathBuf),
    /// A URL (not fetched by this crate: yields an error).
    Url(String),
    /// A list of frame images.
    Frames(Vec<ImageInput>),
    /// Decoded RGB frames `(T, H, W, 3)` with what is known about the video (transformers'
    /// `video_metadata`): the processor samples them (`frames_indices: None`: the frames are the
    /// whole video) or takes them as sampled, and the timestamped prompt and
    /// `second_per_grid_ts` use the frame rate.
    WithMetadata(Arc<Array4<u8>>, VideoMetadata),
}

/// What is known about a decoded video (transformers' `VideoMetadata`).
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct VideoMetadata {
    /// Frames in the whole video.
    pub total_num_frames: usize,
    /// The video's frame rate, if known.
    pub fps: Option<f64>,
    /// The indices of the frames given, if they are a sample (None: every frame).
    pub frames_indices: Option<Vec<usize>>,
}

/// A media item in conversation order.
#[derive(Debug, Clone)]
pub enum MediaInput {
    /// An image to load.
    Image(ImageInput),
    /// A video to load.
    Video(VideoInput),
    /// Already-decoded pixels: an image `(H, W, 3)` or a video's frames `(T, H, W, 3)`, RGB
    /// (vidlm's one type for decoded media, [`DecodedMedia`]). A decoded video is the whole clip
    /// as far as the processor knows: its sampling picks frames by index.
    Decoded(DecodedMedia),
}

impl From<DecodedMedia> for MediaInput {
    fn from(m: DecodedMedia) -> Self {
        MediaInput::Decoded(m)
    }
}

impl MediaInput {
    /// Image or video.
    pub fn kind(&self) -> MediaKind {
        match self {
            MediaInput::Image(_) => MediaKind::Image,
            MediaInput::Video(_) => MediaKind::Video,
            MediaInput::Decoded(m) => m.kind(),
        }
    }

    /// The decoded media, if this item is decoded.
    pub fn decoded(&self) -> Option<&DecodedMedia> {
        match self {
            MediaInput::Decoded(m) => Some(m),
            _ => None,
        }
    }
}

/// One part of a message built in Rust.
#[derive(Debug, Clone)]
pub enum Part {
    /// `{"type": "text", "text": …}`.
    Text(String),
    /// `{"type": "image", …}`.
    Image(ImageInput),
    /// `{"type": "video", …}`.
    Video(VideoInput),
    /// `{"type": "image"}` or `{"type": "video"}` (by [`DecodedMedia::kind`]) with decoded pixels.
    Decoded(DecodedMedia),
}

/// A conversation: the message dicts the template sees, and the media in order of appearance.
#[derive(Debug, Clone, Default)]
pub struct Conversation {
    /// Message dicts (`role`, `content`, …) exactly as the template receives them.
    pub messages: Vec<Value>,
    /// Media parts, in order (images and videos interleaved as they appear).
    pub media: Vec<MediaInput>,
}

fn resolve(base: Option<&Path>, p: &str) -> PathBuf {
    let path = PathBuf::from(p);
    match base {
        Some(b) if path.is_relative() => b.join(path),
        _ => path,
    }
}

fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

fn image_from_str(s: &str, key: &str, base: Option<&Path>) -> ImageInput {
    if key == "base64" || s.starts_with("data:") {
        ImageInput::Base64(s.to_string())
    } else if is_url(s) {
        ImageInput::Url(s.to_string())
    } else {
        ImageInput::Path(resolve(base, s.strip_prefix("file://").unwrap_or(s)))
    }
}

impl Conversation {
    /// An empty conversation.
    pub fn new() -> Conversation {
        Conversation::default()
    }

    /// Appends a message built from parts (decoded media allowed).
    pub fn push(&mut self, role: &str, parts: Vec<Part>) -> &mut Conversation {
        let mut content = Vec::with_capacity(parts.len());
        for p in parts {
            match p {
                Part::Text(t) => content.push(json!({"type": "text", "text": t})),
                Part::Image(i) => {
                    content.push(json!({"type": "image"}));
                    self.media.push(MediaInput::Image(i));
                }
                Part::Video(v) => {
                    content.push(json!({"type": "video"}));
                    self.media.push(MediaInput::Video(v));
                }
                Part::Decoded(m) => {
                    let item = MediaInput::Decoded(m);
                    content.push(match item.kind() {
                        MediaKind::Image => json!({"type": "image"}),
                        MediaKind::Video => json!({"type": "video"}),
                    });
                    self.media.push(item);
                }
            }
        }
        self.messages.push(json!({"role": role, "content": content}));
        self
    }

    /// Appends a message with string content.
    pub fn push_text(&mut self, role: &str, text: &str) -> &mut Conversation {
        self.messages.push(json!({"role": role, "content": text}));
        self
    }

    /// Parses one conversation (a list of messages). Relative media paths resolve against
    /// `base_dir`.
    pub fn from_json(v: &Value, base_dir: Option<&Path>) -> Result<Conversation> {
        let list = v.as_array().ok_or_else(|| {
            ProcessorError::Messages("a conversation must be a list of messages".into())
        })?;
        let mut conv = Conversation::default();
        for (mi, msg) in list.iter().enumerate() {
            let obj = msg.as_object().ok_or_else(|| {
                ProcessorError::Messages(format!("message {mi} is not an object"))
            })?;
            // Drop null-valued keys (transformers `_normalize_conversations`).
            let mut out: Map<String, Value> = obj
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if !out.get("role").is_some_and(Value::is_string) {
                return Err(ProcessorError::Messages(format!("message {mi} has no string `role`")));
            }
            if let Some(Value::Array(parts)) = out.get("content") {
                let mut new_parts = Vec::with_capacity(parts.len());
                for (pi, part) in parts.iter().enumerate() {
                    let Some(p) = part.as_object() else {
                        return Err(ProcessorError::Messages(format!(
                            "message {mi} part {pi} is not an object"
                        )));
                    };
                    let ty = p.get("type").and_then(Value::as_str).ok_or_else(|| {
                        ProcessorError::Messages(format!(
                            "message {mi} part {pi} has no string `type`"
                        ))
                    })?;
                    match ty {
                        "image_url" => {
                            let url = match p.get("image_url") {
                                Some(Value::Object(o)) => {
                                    o.get("url").and_then(Value::as_str).unwrap_or("").to_string()
                                }
                                Some(Value::String(s)) => s.clone(),
                                _ => String::new(),
                            };
                            conv.media
                                .push(MediaInput::Image(image_from_str(&url, "url", base_dir)));
                            new_parts.push(json!({"type": "image", "url": url}));
                            continue;
                        }
                        "image" => {
                            for key in ["image", "url", "path", "base64"] {
                                if let Some(val) = p.get(key) {
                                    let s = val.as_str().ok_or_else(|| {
                                        ProcessorError::Messages(format!(
                                            "message {mi} part {pi}: `{key}` must be a string"
                                        ))
                                    })?;
                                    conv.media
                                        .push(MediaInput::Image(image_from_str(s, key, base_dir)));
                                }
                            }
                        }
                        "video" => {
                            for key in ["video", "url", "path"] {
                                match p.get(key) {
                                    None => {}
                                    Some(Value::String(s)) => conv.media.push(MediaInput::Video(if is_url(s) {
                                        VideoInput::Url(s.clone())
                                    } else {
                                        VideoInput::Path(resolve(base_dir, s.strip_prefix("file://").unwrap_or(s)))
                                    })),
                                    Some(Value::Array(frames)) => {
                                        let fr = frames
                                            .iter()
                                            .map(|f| {
                                                f.as_str().map(|s| image_from_str(s, "path", base_dir)).ok_or_else(|| {
                                                    ProcessorError::Messages(format!(
                                                        "message {mi} part {pi}: frame list entries must be strings"
                                                    ))
                                                })
                                            })
                                            .collect::<Result<Vec<_>>>()?;
                                        conv.media.push(MediaInput::Video(VideoInput::Frames(fr)));
                                    }
                                    Some(_) => {
                                        return Err(ProcessorError::Messages(format!(
                                            "message {mi} part {pi}: `{key}` must be a string or a list of frame paths"
                                        )))
                                    }
                                }
                            }
                        }
                        _ => {}
                    }
                    new_parts.push(part.clone());
                }
                out.insert("content".into(), Value::Array(new_parts));
            }
            conv.messages.push(Value::Object(out));
        }
        Ok(conv)
    }

    /// Parses a `messages.json` value: one conversation (a list of messages) or a batch (a list of
    /// lists).
    pub fn batch_from_json(v: &Value, base_dir: Option<&Path>) -> Result<Vec<Conversation>> {
        match v.as_array() {
            Some(items) if !items.is_empty() && items.iter().all(Value::is_array) => {
                items.iter().map(|c| Conversation::from_json(c, base_dir)).collect()
            }
            Some(_) => Ok(vec![Conversation::from_json(v, base_dir)?]),
            None => Err(ProcessorError::Messages(
                "messages must be a list of messages or a list of conversations".into(),
            )),
        }
    }

    /// Number of image and video media items.
    pub fn media_counts(&self) -> (usize, usize) {
        let images = self.media.iter().filter(|m| m.kind() == MediaKind::Image).count();
        (images, self.media.len() - images)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_parts_and_paths() {
        let v = json!([{"role": "user", "content": [
            {"type": "video", "video": "a.mp4"},
            {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
            {"type": "image", "path": "/abs/b.png"},
            {"type": "text", "text": "hi"}], "name": null}]);
        let c = Conversation::from_json(&v, Some(Path::new("/base"))).unwrap_or_default();
        assert_eq!(c.media.len(), 3);
        assert!(
            matches!(&c.media[0], MediaInput::Video(VideoInput::Path(p)) if p == Path::new("/base/a.mp4"))
        );
        assert!(matches!(&c.media[1], MediaInput::Image(ImageInput::Url(_))));
        assert!(
            matches!(&c.media[2], MediaInput::Image(ImageInput::Path(p)) if p == Path::new("/abs/b.png"))
        );
        assert_eq!(c.messages[0].get("name"), None);
        assert_eq!(c.messages[0]["content"][1], json!({"type": "image", "url": "https://x/y.png"}));
    }

    #[test]
    fn rejects_bad_shapes() {
        assert!(Conversation::from_json(&json!({"role": "user"}), None).is_err());
        assert!(Conversation::from_json(&json!([{"content": "x"}]), None).is_err());
        assert!(Conversation::from_json(
            &json!([{"role": "user", "content": [{"text": "x"}]}]),
            None
        )
        .is_err());
    }
}
