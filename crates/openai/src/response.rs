//! Building responses: completion objects, chunks, finish reasons, stop-sequence trimming,
//! log-probabilities and ids.

use std::sync::atomic::{AtomicU64, Ordering};

use tokenizers::Tokenizer;
use vidlm_decoder::{FinishReason, TokenLogprobs};

use crate::types::{
    AssistantMessage, ChatCompletion, ChatCompletionChunk, Choice, ChoiceLogprobs, ChunkChoice,
    Delta, TokenLogprob, TopLogprob, Usage,
};

/// OpenAI's `finish_reason` for vidlm's: `stop` (end of sequence, stop sequence), `length`
/// (token budget, context), `abort` (cancelled; never sent to a client that is still there).
pub fn finish_reason(r: FinishReason) -> &'static str {
    match r {
        FinishReason::Eos | FinishReason::StopString => "stop",
        FinishReason::MaxNewTokens | FinishReason::ContextLength => "length",
        FinishReason::Cancelled => "abort",
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A fresh, unique id: `chatcmpl-` and 32 hex digits (random per process, then a counter).
pub fn completion_id() -> String {
    format!("chatcmpl-{}", random_hex())
}

/// A fresh request id (the `x-request-id` header when the client sent none).
pub fn request_id() -> String {
    random_hex()
}

fn random_hex() -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut a = std::collections::hash_map::RandomState::new().build_hasher();
    a.write_u64(n);
    a.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    let mut b = std::collections::hash_map::RandomState::new().build_hasher();
    b.write_u64(a.finish());
    b.write_u64(n);
    format!("{:016x}{:016x}", a.finish(), b.finish())
}

/// A non-streamed completion.
pub fn completion(
    id: &str,
    model: &str,
    created: u64,
    text: String,
    finish: &str,
    usage: Usage,
    logprobs: Option<ChoiceLogprobs>,
) -> ChatCompletion {
    ChatCompletion {
        id: id.to_string(),
        object: "chat.completion".into(),
        created,
        model: model.to_string(),
        choices: vec![Choice {
            index: 0,
            message: AssistantMessage { role: "assistant".into(), content: text },
            logprobs,
            finish_reason: finish.to_string(),
        }],
        usage,
    }
}

/// Builds the chunks of one streamed completion (same id, model and `created` in each).
#[derive(Debug, Clone)]
pub struct ChunkBuilder {
    /// The completion id.
    pub id: String,
    /// The model id.
    pub model: String,
    /// Unix seconds.
    pub created: u64,
    /// Whether `usage: null` is sent in each chunk and a usage chunk at the end.
    pub include_usage: bool,
}

impl ChunkBuilder {
    fn chunk(&self, choices: Vec<ChunkChoice>, usage: Option<Usage>) -> ChatCompletionChunk {
        ChatCompletionChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".into(),
            created: self.created,
            model: self.model.clone(),
            choices,
            usage: self.include_usage.then_some(usage),
        }
    }

    /// The first chunk: `delta: {"role": "assistant", "content": ""}`.
    pub fn role(&self) -> ChatCompletionChunk {
        let delta = Delta { role: Some("assistant".into()), content: Some(String::new()) };
        self.chunk(vec![ChunkChoice { index: 0, delta, logprobs: None, finish_reason: None }], None)
    }

    /// A content chunk (`finish` set only on the last one).
    pub fn content(
        &self,
        text: String,
        logprobs: Option<ChoiceLogprobs>,
        finish: Option<&str>,
    ) -> ChatCompletionChunk {
        let delta = Delta { role: None, content: Some(text) };
        self.chunk(
            vec![ChunkChoice {
                index: 0,
                delta,
                logprobs,
                finish_reason: finish.map(str::to_string),
            }],
            None,
        )
    }

    /// The usage chunk (no choices), sent after the last choice chunk when asked for.
    pub fn usage(&self, usage: Usage) -> ChatCompletionChunk {
        ChatCompletionChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".into(),
            created: self.created,
            model: self.model.clone(),
            choices: Vec::new(),
            usage: Some(Some(usage)),
        }
    }
}

/// Cuts the answer at the first stop sequence, also while streaming: text that could be the
/// start of a stop sequence is held back until it is known not to be one. The concatenation of
/// everything [`StopTrimmer::push`] and [`StopTrimmer::finish`] return equals
/// [`trim_at_stop`] of the whole text.
#[derive(Debug, Clone, Default)]
pub struct StopTrimmer {
    stops: Vec<String>,
    held: String,
    stopped: bool,
}

/// The text before the earliest stop sequence (all of it if none occurs).
pub fn trim_at_stop<'a>(text: &'a str, stops: &[String]) -> &'a str {
    let cut = stops.iter().filter(|s| !s.is_empty()).filter_map(|s| text.find(s.as_str())).min();
    match cut {
        Some(i) => &text[..i],
        None => text,
    }
}

impl StopTrimmer {
    /// A trimmer for these sequences (empty ones are ignored).
    pub fn new(stops: &[String]) -> Self {
        StopTrimmer {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            held: String::new(),
            stopped: false,
        }
    }

    /// Whether a stop sequence has been seen (everything after it is dropped).
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Adds a piece; returns the text that is now safe to send.
    pub fn push(&mut self, piece: &str) -> String {
        if self.stopped {
            return String::new();
        }
        if self.stops.is_empty() {
            return piece.to_string();
        }
        self.held.push_str(piece);
        if let Some(i) = self.stops.iter().filter_map(|s| self.held.find(s.as_str())).min() {
            self.stopped = true;
            let out = self.held[..i].to_string();
            self.held.clear();
            return out;
        }
        // Hold back the longest suffix that is a prefix of some stop sequence.
        let mut keep_from = self.held.len();
        for (i, _) in self.held.char_indices().rev() {
            let tail = &self.held[i..];
            if self.stops.iter().any(|s| s.starts_with(tail)) {
                keep_from = i;
            }
            if self.held.len() - i >= self.stops.iter().map(String::len).max().unwrap_or(0) {
                break;
            }
        }
        let out = self.held[..keep_from].to_string();
        self.held.drain(..keep_from);
        out
    }

    /// The end of the answer: returns what is still held back.
    pub fn finish(&mut self) -> String {
        if self.stopped {
            return String::new();
        }
        std::mem::take(&mut self.held)
    }
}

/// The log-probabilities of one generated token as the API returns them: the token's text and
/// bytes, and its `top` alternatives (token id, log-probability), most likely first.
pub fn token_logprob(
    tokenizer: &Tokenizer,
    token_id: u32,
    logprob: f32,
    top: &[(u32, f32)],
) -> TokenLogprob {
    let text = |id: u32| tokenizer.decode(&[id], false).unwrap_or_default();
    let t = text(token_id);
    TokenLogprob {
        bytes: Some(t.as_bytes().to_vec()),
        token: t,
        logprob,
        top_logprobs: top
            .iter()
            .map(|&(id, lp)| {
                let s = text(id);
                TopLogprob { bytes: Some(s.as_bytes().to_vec()), token: s, logprob: lp }
            })
            .collect(),
    }
}

/// [`token_logprob`] of a token as the decoder reports it, with at most `n` alternatives (the
/// request's `top_logprobs`). The server (both modes) and the batch runner build `logprobs` with it.
pub fn choice_logprob(
    tokenizer: &Tokenizer,
    n: usize,
    token_id: i64,
    lp: &TokenLogprobs,
) -> TokenLogprob {
    let top: Vec<(u32, f32)> = lp
        .top
        .iter()
        .take(n)
        .filter_map(|&(id, l)| u32::try_from(id).ok().map(|i| (i, l)))
        .collect();
    token_logprob(tokenizer, u32::try_from(token_id).unwrap_or(0), lp.logprob, &top)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(stops: &[&str], pieces: &[&str]) -> String {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut t = StopTrimmer::new(&stops);
        let mut out = String::new();
        for p in pieces {
            out.push_str(&t.push(p));
        }
        out.push_str(&t.finish());
        let whole: String = pieces.concat();
        assert_eq!(out, trim_at_stop(&whole, &stops), "stream == whole for {pieces:?}");
        out
    }

    #[test]
    fn stop_sequences_are_cut_streamed_or_not() {
        assert_eq!(stream(&["END"], &["abc ", "E", "N", "D tail"]), "abc ");
        assert_eq!(stream(&["END"], &["abc E", "NX"]), "abc ENX");
        assert_eq!(stream(&["\n\n", "Obs"], &["a\n", "b\n", "\nc"]), "a\nb");
        assert_eq!(stream(&["ab", "b"], &["xa", "b"]), "x");
        assert_eq!(stream(&[], &["no ", "stops"]), "no stops");
        assert_eq!(stream(&["猫"], &["a", "b猫c"]), "ab");
        assert_eq!(stream(&["END"], &["xEN"]), "xEN");
    }

    #[test]
    fn finish_reasons() {
        assert_eq!(finish_reason(FinishReason::Eos), "stop");
        assert_eq!(finish_reason(FinishReason::StopString), "stop");
        assert_eq!(finish_reason(FinishReason::MaxNewTokens), "length");
        assert_eq!(finish_reason(FinishReason::ContextLength), "length");
    }

    #[test]
    fn ids_are_unique() {
        let a = completion_id();
        let b = completion_id();
        assert_ne!(a, b);
        assert!(a.starts_with("chatcmpl-") && a.len() == 9 + 32);
    }

    #[test]
    fn chunks_serialize_like_openai() {
        let b = ChunkBuilder {
            id: "chatcmpl-1".into(),
            model: "m".into(),
            created: 1,
            include_usage: true,
        };
        let v = serde_json::to_value(b.role()).unwrap_or_default();
        assert_eq!(v["choices"][0]["delta"]["role"], "assistant");
        assert!(v["usage"].is_null() && v.as_object().is_some_and(|o| o.contains_key("usage")));
        let v = serde_json::to_value(b.usage(Usage::new(3, 4))).unwrap_or_default();
        assert_eq!(v["usage"]["total_tokens"], 7);
        assert_eq!(v["choices"].as_array().map(Vec::len), Some(0));
        let nb = ChunkBuilder { include_usage: false, ..b };
        let v =
            serde_json::to_value(nb.content("x".into(), None, Some("stop"))).unwrap_or_default();
        assert!(v.get("usage").is_none());
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
    }
}
