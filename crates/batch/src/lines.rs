//! Request bodies from records (with the command line's defaults) and the OpenAI Batch output
//! lines.
//!
//! A plain manifest's row becomes the chat completions body a client would send —
//! `{"model", "messages": [{"role": "user", "content": [video_url, text]}]}` — so both kinds of
//! manifest go through the same parsing and media rules as `vidlm serve`. The command line's
//! sampling, pixel-budget and generation flags fill in what a body leaves unset, never
//! overriding it.
//!
//! Output lines are OpenAI Batch output:
//! `{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error"}`. Ids are
//! derived from the `custom_id` (FNV-1a, stable across runs and versions), so a rerun, a
//! resumed run and a sharded run write the same lines; only the body's `created` timestamp
//! differs.

use serde_json::{json, Map, Value};

use vidlm_media_source::FrameSampling;

use crate::manifest::RequestSource;

/// The command line's request settings, used where a body does not set its own.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestDefaults {
    /// `media_io_kwargs.video`: `num_frames` | `fps`, and `max_frames` (an evenly spaced cap;
    /// the policy's hard cap still applies).
    pub frames: FrameSampling,
    /// `mm_processor_kwargs.min_pixels` (patchified families' lower pixel budget), unless the
    /// body sets `min_pixels` or `size` there.
    pub min_pixels: Option<u64>,
    /// `mm_processor_kwargs.max_pixels`, unless the body sets `max_pixels` or `size` there.
    pub max_pixels: Option<u64>,
    /// `max_tokens` (unless the body has `max_tokens` or `max_completion_tokens`).
    pub max_tokens: Option<usize>,
    /// `temperature` (0 = greedy).
    pub temperature: Option<f64>,
    /// `top_p`.
    pub top_p: Option<f64>,
    /// `top_k`.
    pub top_k: Option<usize>,
    /// `min_p`.
    pub min_p: Option<f64>,
    /// `repetition_penalty`.
    pub repetition_penalty: Option<f64>,
    /// `seed`.
    pub seed: Option<u64>,
    /// `stop`.
    pub stop: Vec<String>,
}

impl RequestDefaults {
    /// Fills the unset fields of a chat completions body.
    pub fn apply(&self, body: &mut Map<String, Value>) {
        let mut set = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                if body.get(k).is_none_or(Value::is_null) {
                    body.insert(k.to_string(), v);
                }
            }
        };
        set("temperature", self.temperature.map(|t| json!(t)));
        set("top_p", self.top_p.map(|t| json!(t)));
        set("top_k", self.top_k.map(|t| json!(t)));
        set("min_p", self.min_p.map(|t| json!(t)));
        set("repetition_penalty", self.repetition_penalty.map(|t| json!(t)));
        set("seed", self.seed.map(|t| json!(t)));
        set("stop", (!self.stop.is_empty()).then(|| json!(self.stop)));
        if body.get("max_tokens").is_none_or(Value::is_null)
            && body.get("max_completion_tokens").is_none_or(Value::is_null)
        {
            if let Some(m) = self.max_tokens {
                body.insert("max_tokens".into(), json!(m));
            }
        }
        self.apply_pixels(body);
        let sampling = match (self.frames.num_frames, self.frames.fps) {
            (Some(n), _) => Some(("num_frames", json!(n))),
            (None, Some(f)) => Some(("fps", json!(f))),
            (None, None) => None,
        };
        if sampling.is_none() && self.frames.max_frames.is_none() {
            return;
        }
        let kw = body.entry("media_io_kwargs").or_insert_with(|| json!({}));
        if kw.is_null() {
            *kw = json!({});
        }
        let Some(kw) = kw.as_object_mut() else { return };
        let video = kw.entry("video").or_insert_with(|| json!({}));
        if video.is_null() {
            *video = json!({});
        }
        let Some(video) = video.as_object_mut() else { return };
        let unset = |video: &Map<String, Value>, k: &str| video.get(k).is_none_or(Value::is_null);
        // A request that says how to sample keeps its own setting.
        if let Some((k, v)) = sampling {
            if unset(video, "num_frames") && unset(video, "fps") {
                video.insert(k.into(), v);
            }
        }
        if let Some(m) = self.frames.max_frames {
            if unset(video, "max_frames") {
                video.insert("max_frames".into(), json!(m));
            }
        }
    }
}

impl RequestDefaults {
    /// The pixel budgets into `mm_processor_kwargs`, each only where the body's own
    /// `mm_processor_kwargs` sets neither that key nor `size` (whose sides `min_pixels` /
    /// `max_pixels` would override: the body's budget wins). A body whose `mm_processor_kwargs`
    /// is not an object is left for the parser to refuse.
    fn apply_pixels(&self, body: &mut Map<String, Value>) {
        if self.min_pixels.is_none() && self.max_pixels.is_none() {
            return;
        }
        let kw = body.entry("mm_processor_kwargs").or_insert_with(|| json!({}));
        if kw.is_null() {
            *kw = json!({});
        }
        let Some(kw) = kw.as_object_mut() else { return };
        let has_size = kw.get("size").is_some_and(|v| !v.is_null());
        for (k, v) in [("min_pixels", self.min_pixels), ("max_pixels", self.max_pixels)] {
            if let Some(v) = v {
                if !has_size && kw.get(k).is_none_or(Value::is_null) {
                    kw.insert(k.into(), json!(v));
                }
            }
        }
    }
}

/// The chat completions body of a record (`Err`: the record's own problem, for its error line).
/// `model` is what plain rows name as their model; `video_url` turns a plain row's video into
/// the URL the body carries (relative paths resolved as the CLI documents).
pub fn body_of(
    request: &RequestSource,
    model: &str,
    defaults: &RequestDefaults,
    video_url: impl Fn(&str) -> String,
) -> Result<Vec<u8>, String> {
    let mut body = match request {
        RequestSource::Invalid(m) => return Err(m.clone()),
        RequestSource::Body(Value::Object(b)) => b.clone(),
        RequestSource::Body(_) => return Err("body must be a JSON object".into()),
        RequestSource::Video { video, prompt } => {
            let v = json!({
                "model": model,
                "messages": [{"role": "user", "content": [
                    {"type": "video_url", "video_url": {"url": video_url(video)}},
                    {"type": "text", "text": prompt},
                ]}],
            });
            match v {
                Value::Object(m) => m,
                _ => Map::new(),
            }
        }
    };
    defaults.apply(&mut body);
    serde_json::to_vec(&Value::Object(body)).map_err(|e| e.to_string())
}

/// FNV-1a, 128 bits: a stable hash for ids.
pub fn fnv128(s: &str) -> u128 {
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    for b in s.as_bytes() {
        h ^= u128::from(*b);
        h = h.wrapping_mul(0x0000000001000000000000000000013B);
    }
    h
}

/// The ids of a record's output line: (`id`, `request_id`, the completion's `id`).
pub fn line_ids(custom_id: &str) -> (String, String, String) {
    let h = format!("{:032x}", fnv128(custom_id));
    (format!("batch_req_{h}"), format!("req_{h}"), format!("chatcmpl-{h}"))
}

/// A success line: `body` is the chat completion object.
pub fn success_line(custom_id: &str, body: Value) -> String {
    let (id, request_id, _) = line_ids(custom_id);
    json!({
        "id": id,
        "custom_id": custom_id,
        "response": {"status_code": 200, "request_id": request_id, "body": body},
        "error": null,
    })
    .to_string()
}

/// An error line: the response the server would give (`status`, `{"error": {...}}` body) and the
/// top-level `error` (`code`, `message`) so failures are easy to select.
pub fn error_line(custom_id: &str, status: u16, error_body: Value) -> String {
    let (id, request_id, _) = line_ids(custom_id);
    let code = error_body.pointer("/error/code").cloned().unwrap_or(Value::Null);
    let message = error_body.pointer("/error/message").cloned().unwrap_or(Value::Null);
    json!({
        "id": id,
        "custom_id": custom_id,
        "response": {"status_code": status, "request_id": request_id, "body": error_body},
        "error": {"code": code, "message": message},
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_only_gaps() {
        let d = RequestDefaults {
            frames: FrameSampling { num_frames: Some(4), ..Default::default() },
            max_tokens: Some(16),
            temperature: Some(0.0),
            stop: vec!["x".into()],
            ..Default::default()
        };
        let mut b =
            json!({"model": "m", "messages": [], "max_completion_tokens": 3, "temperature": 0.7})
                .as_object()
                .cloned()
                .unwrap();
        d.apply(&mut b);
        assert_eq!(b.get("max_tokens"), None);
        assert_eq!(b["temperature"], 0.7);
        assert_eq!(b["stop"], json!(["x"]));
        assert_eq!(b["media_io_kwargs"], json!({"video": {"num_frames": 4}}));
        let mut b = json!({"media_io_kwargs": {"video": {"fps": 1.0}}, "max_tokens": null})
            .as_object()
            .cloned()
            .unwrap();
        d.apply(&mut b);
        assert_eq!(b["media_io_kwargs"], json!({"video": {"fps": 1.0}}));
        assert_eq!(b["max_tokens"], 16);
        let d = RequestDefaults {
            frames: FrameSampling { fps: Some(2.0), max_frames: Some(8), ..Default::default() },
            ..Default::default()
        };
        let mut b =
            json!({"media_io_kwargs": {"video": {"max_frames": 4}}}).as_object().cloned().unwrap();
        d.apply(&mut b);
        assert_eq!(b["media_io_kwargs"], json!({"video": {"fps": 2.0, "max_frames": 4}}));
        let mut b = Map::new();
        RequestDefaults::default().apply(&mut b);
        assert!(b.is_empty());
    }

    #[test]
    fn pixel_budgets_fill_only_gaps() {
        let d = RequestDefaults {
            min_pixels: Some(3136),
            max_pixels: Some(20_000),
            ..Default::default()
        };
        let mut b = Map::new();
        d.apply(&mut b);
        assert_eq!(b["mm_processor_kwargs"], json!({"min_pixels": 3136, "max_pixels": 20000}));
        // The body's own key wins; the other default fills in.
        let mut b =
            json!({"mm_processor_kwargs": {"max_pixels": 9000}}).as_object().cloned().unwrap();
        d.apply(&mut b);
        assert_eq!(b["mm_processor_kwargs"], json!({"min_pixels": 3136, "max_pixels": 9000}));
        // A body with `size` keeps its budget whole (min/max would override its sides).
        let size = json!({"size": {"shortest_edge": 1000, "longest_edge": 5000}});
        let mut b = json!({"mm_processor_kwargs": size.clone()}).as_object().cloned().unwrap();
        d.apply(&mut b);
        assert_eq!(b["mm_processor_kwargs"], size);
        // Not an object: left for the parser to refuse.
        let mut b = json!({"mm_processor_kwargs": 5}).as_object().cloned().unwrap();
        d.apply(&mut b);
        assert_eq!(b["mm_processor_kwargs"], 5);
    }

    #[test]
    fn plain_rows_become_bodies() {
        let r = RequestSource::Video { video: "a.mp4".into(), prompt: "what?".into() };
        let b = body_of(&r, "demo", &RequestDefaults::default(), |v| format!("/base/{v}")).unwrap();
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["model"], "demo");
        assert_eq!(
            v["messages"][0]["content"][0],
            json!({"type": "video_url", "video_url": {"url": "/base/a.mp4"}})
        );
        assert_eq!(v["messages"][0]["content"][1]["text"], "what?");
        assert_eq!(
            body_of(
                &RequestSource::Invalid("bad".into()),
                "m",
                &RequestDefaults::default(),
                str::to_string
            ),
            Err("bad".into())
        );
    }

    #[test]
    fn lines_are_stable() {
        assert_eq!(fnv128(""), 0x6c62272e07bb014262b821756295c58d);
        let (a, b, c) = line_ids("x");
        assert!(a.starts_with("batch_req_") && b.starts_with("req_") && c.starts_with("chatcmpl-"));
        assert_eq!(line_ids("x"), line_ids("x"));
        assert_ne!(line_ids("x"), line_ids("y"));
        let l: Value = serde_json::from_str(&error_line(
            "x",
            404,
            json!({"error": {"code": "model_not_found", "message": "no"}}),
        ))
        .unwrap();
        assert_eq!(l["response"]["status_code"], 404);
        assert_eq!(l["error"]["code"], "model_not_found");
        let l: Value =
            serde_json::from_str(&success_line("x", json!({"object": "chat.completion"}))).unwrap();
        assert!(l["error"].is_null());
        assert_eq!(l["response"]["body"]["object"], "chat.completion");
    }
}
