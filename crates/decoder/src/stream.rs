//! Incremental detokenization (the prefix-offset technique used by text-generation-inference
//! and vLLM): the text of the tokens after a moving prefix is decoded together with that prefix,
//! and only the new suffix is emitted, and only once it no longer ends in an incomplete UTF-8
//! sequence (`U+FFFD`). Byte-level BPE tokens that split a character, and tokenizers whose
//! decoders strip or add spaces at word starts (SentencePiece `▁`), therefore stream correctly:
//! the concatenated pieces equal `tokenizer.decode(all_ids)`.

use tokenizers::Tokenizer;

use crate::DecoderError;

/// Streaming detokenizer for one sequence.
#[derive(Debug, Clone, Default)]
pub struct StreamDecoder {
    ids: Vec<u32>,
    prefix_offset: usize,
    read_offset: usize,
    skip_special_tokens: bool,
}

fn decode(tok: &Tokenizer, ids: &[u32], skip: bool) -> Result<String, DecoderError> {
    tok.decode(ids, skip).map_err(|e| DecoderError::Tokenizer(e.to_string()))
}

impl StreamDecoder {
    /// A new, empty stream. `skip_special_tokens` is passed to `Tokenizer::decode`.
    pub fn new(skip_special_tokens: bool) -> Self {
        StreamDecoder { skip_special_tokens, ..Default::default() }
    }

    /// Adds one token and returns the text that became final (possibly empty).
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> Result<String, DecoderError> {
        self.ids.push(id);
        let prefix =
            decode(tok, &self.ids[self.prefix_offset..self.read_offset], self.skip_special_tokens)?;
        let full = decode(tok, &self.ids[self.prefix_offset..], self.skip_special_tokens)?;
        if full.len() > prefix.len() && !full.ends_with('\u{FFFD}') {
            let piece = match full.get(prefix.len()..) {
                Some(p) if full.starts_with(&prefix) => p.to_string(),
                _ => {
                    // The decoder rewrote the prefix (rare): emit from the first differing char.
                    let common = full
                        .char_indices()
                        .zip(prefix.chars())
                        .take_while(|((_, a), b)| a == b)
                        .last()
                        .map(|((i, c), _)| i + c.len_utf8())
                        .unwrap_or(0);
                    full.get(common..).unwrap_or("").to_string()
                }
            };
            self.prefix_offset = self.read_offset;
            self.read_offset = self.ids.len();
            Ok(piece)
        } else {
            Ok(String::new())
        }
    }

    /// Emits whatever is still held back (an incomplete character at the very end decodes to
    /// `U+FFFD`, as `Tokenizer::decode` would).
    pub fn finish(&mut self, tok: &Tokenizer) -> Result<String, DecoderError> {
        if self.read_offset >= self.ids.len() {
            return Ok(String::new());
        }
        let prefix =
            decode(tok, &self.ids[self.prefix_offset..self.read_offset], self.skip_special_tokens)?;
        let full = decode(tok, &self.ids[self.prefix_offset..], self.skip_special_tokens)?;
        self.prefix_offset = self.read_offset;
        self.read_offset = self.ids.len();
        Ok(full.get(prefix.len()..).unwrap_or("").to_string())
    }

    /// All tokens pushed so far.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tokenizers::decoders::byte_level::ByteLevel;
    use tokenizers::models::bpe::BPE;
    use tokenizers::pre_tokenizers::byte_level::ByteLevel as ByteLevelPre;
    use tokenizers::AddedToken;

    /// A byte-level BPE tokenizer whose vocabulary is the 256 byte symbols plus a few merges:
    /// multi-byte characters are split over several tokens, like GPT-2/Qwen tokenizers do.
    pub(crate) fn byte_level_tokenizer() -> Tokenizer {
        let alphabet = ByteLevelPre::alphabet();
        let mut chars: Vec<char> = alphabet.into_iter().collect();
        chars.sort();
        let mut vocab: tokenizers::models::bpe::Vocab =
            chars.iter().enumerate().map(|(i, c)| (c.to_string(), i as u32)).collect();
        let merges = vec![
            ("Ġ".to_string(), "w".to_string()),
            ("Ġw".to_string(), "o".to_string()),
            ("h".to_string(), "i".to_string()),
        ];
        for (a, b) in &merges {
            let n = vocab.len() as u32;
            vocab.insert(format!("{a}{b}"), n);
        }
        let bpe = BPE::builder().vocab_and_merges(vocab, merges).build().expect("bpe");
        let mut t = Tokenizer::new(bpe);
        t.with_pre_tokenizer(Some(ByteLevelPre::new(false, true, true)));
        t.with_decoder(Some(ByteLevel::default()));
        t.add_special_tokens(&[AddedToken::from("<|im_end|>", true)]);
        t
    }

    fn stream_all(tok: &Tokenizer, ids: &[u32], skip: bool) -> (Vec<String>, String) {
        let mut s = StreamDecoder::new(skip);
        let mut pieces = Vec::new();
        for &id in ids {
            pieces.push(s.push(tok, id).unwrap());
        }
        pieces.push(s.finish(tok).unwrap());
        let joined = pieces.concat();
        (pieces, joined)
    }

    #[test]
    fn multibyte_characters_are_never_split() {
        let tok = byte_level_tokenizer();
        let text = "hi wo 猫🐈 é!";
        let ids = tok.encode(text, false).unwrap().get_ids().to_vec();
        assert!(ids.len() > text.chars().count(), "multi-byte chars must span several tokens");
        let (pieces, joined) = stream_all(&tok, &ids, false);
        assert_eq!(joined, text);
        assert_eq!(joined, tok.decode(&ids, false).unwrap());
        for p in &pieces {
            assert!(!p.contains('\u{FFFD}'), "piece {p:?} splits a character");
        }
        // The cat emoji is 4 bytes = 4 tokens: three of them produce nothing, the last all of it.
        assert!(pieces.iter().any(|p| p.contains('🐈')));
    }

    #[test]
    fn special_tokens_skipped_or_kept() {
        let tok = byte_level_tokenizer();
        let mut ids = tok.encode("hi", false).unwrap().get_ids().to_vec();
        let end = tok.token_to_id("<|im_end|>").unwrap();
        ids.push(end);
        assert_eq!(stream_all(&tok, &ids, true).1, "hi");
        assert_eq!(stream_all(&tok, &ids, false).1, "hi<|im_end|>");
    }

    #[test]
    fn truncated_character_flushes_as_replacement() {
        let tok = byte_level_tokenizer();
        let ids = tok.encode("a猫", false).unwrap().get_ids().to_vec();
        let cut = &ids[..ids.len() - 1];
        let (_, joined) = stream_all(&tok, cut, false);
        assert_eq!(joined, tok.decode(cut, false).unwrap());
        assert!(joined.starts_with('a'));
    }
}
