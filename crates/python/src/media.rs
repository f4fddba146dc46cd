//! Chat messages from Python: the Hugging Face format the CLI takes, plus OpenAI `image_url` /
//! `video_url` parts and in-memory media, turned into a conversation whose media are all decoded
//! (what `vidlm run` hands the engine).
//!
//! Two steps, so that the GIL is held only for the first:
//! 1. [`parse`] (GIL held): Python objects → [`RawConversation`]: the message dicts as JSON and
//!    each media item as owned Rust data (a path, a `data:` URL, or decoded pixels).
//! 2. [`RawConversation::decode`] (GIL released): files through the processor's loader, exactly as
//!    `vidlm run` / `vidlm preprocess` decode them; `data:` URLs through the same reader from
//!    bytes; in-memory videos sampled with transformers' index formulas (`select_frames`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ndarray::{Array3, Array4, Axis};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyList, PyString, PyTuple};
use serde_json::{Map, Value};
use vidlm_media_source::FrameSampling;
use vidlm_model::Sampling;
use vidlm_processor::{
    Conversation, DecodedMedia, ImageInput, MediaInput, ProcessOptions, Processor, VideoInput,
};
use vidlm_video_io::{OpenOptions, SampleRequest, VideoReader};

use crate::arrays::{image_from_python, is_ndarray, is_pil_image, video_from_numpy};
use crate::errors::Failure;

/// The processor options of a call's frame sampling (`num_frames=` | `fps=`, `max_frames=`):
/// vidlm's one sampling type, mapped as `vidlm run` maps its flags.
pub fn process_options(frames: &FrameSampling) -> Result<ProcessOptions, Failure> {
    Ok(ProcessOptions {
        sampling: frames.sampling()?,
        max_frames: frames.max_frames,
        ..Default::default()
    })
}

/// One media item, owned by Rust.
#[derive(Debug, Clone)]
pub enum RawMedia {
    /// A file, or a list of frame files (as the CLI takes them).
    Input(MediaInput),
    /// An image `data:` URL.
    ImageData(String),
    /// A video `data:` URL.
    VideoData(String),
    /// Decoded pixels `(H, W, 3)`.
    Image(Array3<u8>),
    /// All the frames of a clip `(T, H, W, 3)`, and its frame rate when given.
    Video(Array4<u8>, Option<f64>),
}

/// A conversation as parsed from Python: the message dicts and the media in order.
#[derive(Debug, Clone, Default)]
pub struct RawConversation {
    /// The message dicts the template sees.
    pub messages: Vec<Value>,
    /// The media, in order of appearance.
    pub media: Vec<RawMedia>,
}

/// Whether `obj` is a list of conversations (a list whose items are lists) rather than one.
pub fn is_batch(obj: &Bound<'_, PyAny>) -> PyResult<bool> {
    if let Ok(list) = obj.downcast::<PyList>() {
        if list.is_empty() {
            return Ok(false);
        }
        let first = list.get_item(0)?;
        return Ok(first.downcast::<PyList>().is_ok() || first.downcast::<PyTuple>().is_ok());
    }
    Ok(false)
}

/// Parses one conversation or a list of them.
pub fn parse_many(obj: &Bound<'_, PyAny>) -> PyResult<Vec<RawConversation>> {
    if is_batch(obj)? {
        obj.try_iter()?.map(|c| parse(&c?)).collect()
    } else {
        Ok(vec![parse(obj)?])
    }
}

fn cwd() -> PathBuf {
    std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
}

/// A path string (a `file://` URL or a plain path), relative to the current directory.
fn local_path(s: &str) -> PathBuf {
    let p = Path::new(s.strip_prefix("file://").unwrap_or(s));
    if p.is_relative() {
        cwd().join(p)
    } else {
        p.to_path_buf()
    }
}

fn is_remote(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

fn remote_refused(what: &str, url: &str) -> Failure {
    Failure::new(
        vidlm_model::ErrorKind::Unsupported,
        format!("{what}: remote media are not fetched in-process ({url}); download it first"),
    )
}

/// Plain JSON of a Python value (dicts, lists, strings, numbers, booleans, None).
pub fn to_json(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Value> {
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(b) = obj.downcast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if let Ok(s) = obj.downcast::<PyString>() {
        return Ok(Value::String(s.to_string()));
    }
    if let Ok(i) = obj.extract::<i64>() {
        return Ok(Value::from(i));
    }
    if let Ok(f) = obj.extract::<f64>() {
        return Ok(serde_json::Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null));
    }
    if let Ok(d) = obj.downcast::<PyDict>() {
        let mut m = Map::new();
        for (k, v) in d.iter() {
            let k: String = k.extract().map_err(|_| {
                PyErr::from(Failure::bad_request(format!("{what}: dict keys must be strings")))
            })?;
            m.insert(k.clone(), to_json(&v, &format!("{what}.{k}"))?);
        }
        return Ok(Value::Object(m));
    }
    if obj.downcast::<PyList>().is_ok() || obj.downcast::<PyTuple>().is_ok() {
        return obj
            .try_iter()?
            .map(|v| to_json(&v?, what))
            .collect::<PyResult<Vec<_>>>()
            .map(Value::Array);
    }
    let ty = obj.get_type().name()?.to_string();
    Err(Failure::bad_request(format!("{what}: a {ty} cannot be part of a message")).into())
}

/// The URL of an OpenAI `image_url` / `video_url` field (`{"url": ...}` or a string).
fn openai_url(v: &Bound<'_, PyAny>, what: &str) -> PyResult<String> {
    if let Ok(s) = v.extract::<String>() {
        return Ok(s);
    }
    if let Ok(d) = v.downcast::<PyDict>() {
        if let Some(u) = d.get_item("url")? {
            if let Ok(s) = u.extract::<String>() {
                return Ok(s);
            }
        }
    }
    Err(Failure::bad_request(format!("{what}: expected {{\"url\": \"...\"}}")).into())
}

fn image_from_str(s: &str, what: &str) -> Result<RawMedia, Failure> {
    if s.starts_with("data:") {
        Ok(RawMedia::ImageData(s.to_string()))
    } else if is_remote(s) {
        Err(remote_refused(what, s))
    } else {
        Ok(RawMedia::Input(MediaInput::Image(ImageInput::Path(local_path(s)))))
    }
}

fn video_from_str(s: &str, what: &str) -> Result<RawMedia, Failure> {
    if s.starts_with("data:") {
        Ok(RawMedia::VideoData(s.to_string()))
    } else if is_remote(s) {
        Err(remote_refused(what, s))
    } else {
        Ok(RawMedia::Input(MediaInput::Video(VideoInput::Path(local_path(s)))))
    }
}

/// Parses one conversation (a list of `{"role", "content"}` dicts).
pub fn parse(obj: &Bound<'_, PyAny>) -> PyResult<RawConversation> {
    if obj.downcast::<PyList>().is_err() && obj.downcast::<PyTuple>().is_err() {
        return Err(Failure::bad_request("a conversation must be a list of messages").into());
    }
    let mut conv = RawConversation::default();
    for (mi, msg) in obj.try_iter()?.enumerate() {
        let msg = msg?;
        let d = msg.downcast::<PyDict>().map_err(|_| {
            PyErr::from(Failure::bad_request(format!("message {mi} is not a dict")))
        })?;
        let mut out = Map::new();
        for (k, v) in d.iter() {
            let k: String = k.extract().map_err(|_| {
                PyErr::from(Failure::bad_request(format!("message {mi}: keys must be strings")))
            })?;
            // Keys whose value is None are dropped, as transformers does.
            if v.is_none() {
                continue;
            }
            if k == "content" && (v.downcast::<PyList>().is_ok() || v.downcast::<PyTuple>().is_ok())
            {
                let mut parts = Vec::new();
                for (pi, part) in v.try_iter()?.enumerate() {
                    parts.push(parse_part(&part?, &format!("message {mi} part {pi}"), &mut conv)?);
                }
                out.insert(k, Value::Array(parts));
            } else {
                out.insert(k.clone(), to_json(&v, &format!("message {mi}.{k}"))?);
            }
        }
        if !out.get("role").is_some_and(Value::is_string) {
            return Err(Failure::bad_request(format!("message {mi} has no string `role`")).into());
        }
        conv.messages.push(Value::Object(out));
    }
    Ok(conv)
}

/// One content part: its JSON for the template, its media (if any) pushed to `conv.media`.
fn parse_part(part: &Bound<'_, PyAny>, what: &str, conv: &mut RawConversation) -> PyResult<Value> {
    let d = part
        .downcast::<PyDict>()
        .map_err(|_| PyErr::from(Failure::bad_request(format!("{what} is not a dict"))))?;
    let ty: String = match d.get_item("type")? {
        Some(t) => t.extract().map_err(|_| {
            PyErr::from(Failure::bad_request(format!("{what} has no string `type`")))
        })?,
        None => return Err(Failure::bad_request(format!("{what} has no string `type`")).into()),
    };
    let media_keys: &[&str] = match ty.as_str() {
        "image" => &["image", "url", "path", "base64"],
        "video" => &["video", "url", "path"],
        "image_url" | "video_url" => &[],
        _ => return to_json(part, what),
    };
    // The template sees the part without its media values (it only reads `type`).
    let mut json = Map::new();
    for (k, v) in d.iter() {
        let k: String = k.extract()?;
        if v.is_none() || media_keys.contains(&k.as_str()) || k == "image_url" || k == "video_url" {
            continue;
        }
        json.insert(k.clone(), to_json(&v, &format!("{what}.{k}"))?);
    }
    let is_video = ty == "video" || ty == "video_url";
    json.insert("type".into(), Value::String(if is_video { "video" } else { "image" }.into()));
    let media = if ty == "image_url" || ty == "video_url" {
        let v = d
            .get_item(ty.as_str())?
            .ok_or_else(|| PyErr::from(Failure::bad_request(format!("{what}: no `{ty}` field"))))?;
        let url = openai_url(&v, what)?;
        if is_video {
            video_from_str(&url, what)?
        } else {
            image_from_str(&url, what)?
        }
    } else {
        let mut found = None;
        for key in media_keys {
            if let Some(v) = d.get_item(*key)? {
                if !v.is_none() {
                    found = Some((key, v));
                    break;
                }
            }
        }
        let Some((key, v)) = found else {
            return Err(Failure::bad_request(format!(
                "{what}: a {ty} part needs one of {}",
                media_keys.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
            ))
            .into());
        };
        if let Ok(s) = v.extract::<String>() {
            if *key == "base64" {
                RawMedia::ImageData(format!("data:;base64,{s}"))
            } else if is_video {
                video_from_str(&s, what)?
            } else {
                image_from_str(&s, what)?
            }
        } else if is_video && is_ndarray(&v) {
            let fps = match d.get_item("fps")? {
                Some(f) if !f.is_none() => {
                    let f: f64 = f.extract().map_err(|_| {
                        PyErr::from(Failure::bad_request(format!("{what}: `fps` must be a number")))
                    })?;
                    if !(f.is_finite() && f > 0.0) {
                        return Err(Failure::bad_request(format!(
                            "{what}: `fps` must be > 0, got {f}"
                        ))
                        .into());
                    }
                    Some(f)
                }
                _ => None,
            };
            json.remove("fps");
            RawMedia::Video(video_from_numpy(&v, what)?, fps)
        } else if is_video && (v.downcast::<PyList>().is_ok() || v.downcast::<PyTuple>().is_ok()) {
            // A list of frame image paths (the goldens' form), as the CLI takes it.
            let frames = v
                .try_iter()?
                .map(|f| {
                    let s: String = f?.extract().map_err(|_| {
                        PyErr::from(Failure::bad_request(format!(
                            "{what}: frame list entries must be strings"
                        )))
                    })?;
                    Ok(ImageInput::Path(local_path(&s)))
                })
                .collect::<PyResult<Vec<_>>>()?;
            RawMedia::Input(MediaInput::Video(VideoInput::Frames(frames)))
        } else if !is_video && (is_pil_image(&v) || is_ndarray(&v)) {
            RawMedia::Image(image_from_python(&v, what)?)
        } else {
            let tn = v.get_type().name()?.to_string();
            let want = if is_video {
                "a path, a URL, a list of frame paths or a uint8 [T, H, W, 3] array"
            } else {
                "a path, a URL, a PIL image or a uint8 [H, W, 3] array"
            };
            return Err(
                Failure::bad_request(format!("{what}: `{key}` must be {want}, got {tn}")).into()
            );
        }
    };
    conv.media.push(media);
    Ok(Value::Object(json))
}

fn data_bytes(url: &str) -> Result<Arc<[u8]>, Failure> {
    let policy = vidlm_media_source::MediaPolicy::default();
    let source = policy.check(url)?;
    let loaded = policy.load(&source)?;
    match loaded.data {
        vidlm_media_source::MediaData::Bytes(b) => Ok(b),
        vidlm_media_source::MediaData::File(_) => {
            Err(Failure::new(vidlm_model::ErrorKind::Internal, "a data URL loaded as a file"))
        }
    }
}

impl RawConversation {
    /// Every media item decoded and sampled by `opts`, as `Processor::load_conversation` does
    /// for files: the result, processed with no further sampling, gives the inputs `opts` gives.
    pub fn decode(
        &self,
        processor: &Processor,
        opts: &ProcessOptions,
    ) -> Result<Conversation, Failure> {
        let mut media = Vec::with_capacity(self.media.len());
        for (i, m) in self.media.iter().enumerate() {
            let what = format!("media {i}");
            let item = match m {
                RawMedia::Input(input) => {
                    let one = Conversation { messages: Vec::new(), media: vec![input.clone()] };
                    let mut loaded = processor.load_conversation(&one, opts)?;
                    loaded.media.pop().ok_or_else(|| {
                        Failure::new(vidlm_model::ErrorKind::Internal, "no media loaded")
                    })?
                }
                RawMedia::Image(a) => MediaInput::Decoded(DecodedMedia::Image(Arc::new(a.clone()))),
                RawMedia::ImageData(url) => {
                    let bytes = data_bytes(url)?;
                    let frames =
                        vidlm_video_io::load_image_bytes_with(bytes, &OpenOptions::default())?;
                    if frames.data.shape()[0] == 0 {
                        return Err(Failure::new(
                            vidlm_model::ErrorKind::UnsupportedMedia,
                            format!("{what}: no image decoded"),
                        ));
                    }
                    MediaInput::Decoded(DecodedMedia::Image(Arc::new(
                        frames.data.index_axis_move(Axis(0), 0),
                    )))
                }
                RawMedia::VideoData(url) => {
                    let bytes = data_bytes(url)?;
                    let mut req = SampleRequest::new(opts.sampling.clone());
                    req.max_frames = opts.max_frames;
                    let mut reader = VideoReader::from_bytes(bytes, &OpenOptions::default())?;
                    MediaInput::Decoded(DecodedMedia::Video(Arc::new(reader.sample(&req)?.data)))
                }
                RawMedia::Video(a, fps) => {
                    if matches!(opts.sampling, Sampling::Fps(_) | Sampling::FpsByTime(_))
                        && fps.is_none()
                    {
                        return Err(Failure::bad_request(format!(
                            "{what}: fps sampling of an in-memory video needs the clip's rate: \
                             {{\"type\": \"video\", \"video\": frames, \"fps\": 30.0}}"
                        )));
                    }
                    let sampled = opts.sampling != Sampling::All || opts.max_frames.is_some();
                    let frames = if sampled {
                        let idx = vidlm_model::select_frames(
                            &opts.sampling,
                            a.shape()[0],
                            *fps,
                            opts.max_frames,
                            false,
                        )
                        .map_err(|e| Failure::new(e.kind(), format!("{what}: {e}")))?;
                        a.select(Axis(0), &idx)
                    } else {
                        a.clone()
                    };
                    MediaInput::Decoded(DecodedMedia::Video(Arc::new(frames)))
                }
            };
            media.push(item);
        }
        Ok(Conversation { messages: self.messages.clone(), media })
    }
}
