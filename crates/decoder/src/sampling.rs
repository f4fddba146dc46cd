//! Logits processors and token selection, following transformers' `LogitsProcessorList`.
//!
//! Order (transformers 5.23 `GenerationMixin._get_logits_processor`): logit bias (OpenAI's
//! `logit_bias`; where transformers puts its token-level equivalent, `SequenceBiasLogitsProcessor`
//! with one-token sequences: first, before the repetition penalty — and where vLLM applies it:
//! before penalties, temperature and sampling), repetition penalty (always, when `!= 1.0`), then
//! — only when sampling — temperature (`!= 1.0`), top-k (`!= 0`), top-p (`< 1.0`), min-p (when
//! set). Filtered entries become `-inf`. Greedy decoding takes the arg-max of the processed
//! scores (first index on ties, like `torch.argmax`).

/// Resolved sampling parameters for one generation call.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// Sample (`true`) or take the arg-max (`false`).
    pub do_sample: bool,
    /// Temperature (> 0). Only used when sampling.
    pub temperature: f32,
    /// Keep the `top_k` highest scores (0 = off). Only used when sampling.
    pub top_k: usize,
    /// Nucleus mass (1.0 = off). Only used when sampling.
    pub top_p: f32,
    /// Min-p relative threshold (`None` = off). Only used when sampling.
    pub min_p: Option<f32>,
    /// Repetition penalty (1.0 = off). Applied to greedy and sampling.
    pub repetition_penalty: f32,
    /// Added to the scores of these token ids before anything else (OpenAI `logit_bias`: each
    /// bias in [-100, 100]; ids checked against the vocabulary by
    /// [`ResolvedGeneration::check_vocab`](crate::ResolvedGeneration::check_vocab)). Applied to
    /// greedy and sampling. Empty = off.
    pub logit_bias: Vec<(usize, f32)>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            do_sample: false,
            temperature: 1.0,
            top_k: 50,
            top_p: 1.0,
            min_p: None,
            repetition_penalty: 1.0,
            logit_bias: Vec::new(),
        }
    }
}

/// OpenAI / vLLM `logit_bias` (transformers' `SequenceBiasLogitsProcessor` with one-token
/// sequences): `bias` is added to the score of each listed token id. Ids outside the vocabulary
/// are skipped here; callers refuse them before generating
/// ([`ResolvedGeneration::check_vocab`](crate::ResolvedGeneration::check_vocab)).
pub fn apply_logit_bias(scores: &mut [f32], bias: &[(usize, f32)]) {
    for &(id, b) in bias {
        if let Some(s) = scores.get_mut(id) {
            *s += b;
        }
    }
}

/// `RepetitionPenaltyLogitsProcessor`: every token id that occurs in `history` (prompt without
/// its left padding, plus the generated tokens) has its score divided by `penalty` if positive,
/// multiplied if negative. Ids outside the vocabulary are ignored.
pub fn apply_repetition_penalty(scores: &mut [f32], history: &[i64], penalty: f32) {
    if penalty == 1.0 {
        return;
    }
    let mut seen = vec![false; scores.len()];
    for &id in history {
        if let Ok(i) = usize::try_from(id) {
            if let Some(s) = seen.get_mut(i) {
                *s = true;
            }
        }
    }
    for (score, hit) in scores.iter_mut().zip(seen) {
        if hit {
            *score = if *score < 0.0 { *score * penalty } else { *score / penalty };
        }
    }
}

/// `TemperatureLogitsWarper`: `scores / temperature`.
pub fn apply_temperature(scores: &mut [f32], temperature: f32) {
    if temperature == 1.0 {
        return;
    }
    for s in scores.iter_mut() {
        *s /= temperature;
    }
}

/// `TopKLogitsWarper`: scores strictly below the k-th largest become `-inf` (ties are kept).
pub fn apply_top_k(scores: &mut [f32], top_k: usize) {
    if top_k == 0 || top_k >= scores.len() {
        return;
    }
    let mut sorted: Vec<f32> = scores.to_vec();
    // k-th largest: partition so that index k-1 holds it in descending order.
    sorted.select_nth_unstable_by(top_k - 1, |a, b| b.total_cmp(a));
    let kth = sorted[top_k - 1];
    for s in scores.iter_mut() {
        if *s < kth {
            *s = f32::NEG_INFINITY;
        }
    }
}

fn softmax(scores: &[f32]) -> Vec<f64> {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return vec![0.0; scores.len()];
    }
    let exps: Vec<f64> = scores.iter().map(|&s| ((s - max) as f64).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// `TopPLogitsWarper` (min_tokens_to_keep = 1): sort ascending, remove the tokens whose
/// cumulative probability is `<= 1 - top_p`; the highest-scoring token is always kept.
pub fn apply_top_p(scores: &mut [f32], top_p: f32) {
    if top_p >= 1.0 || scores.is_empty() {
        return;
    }
    let probs = softmax(scores);
    let mut order: Vec<usize> = (0..scores.len()).collect();
    // torch.sort(descending=False) — a stable ascending sort.
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let threshold = 1.0 - top_p as f64;
    let mut cum = 0.0f64;
    let last = order.len() - 1;
    let mut remove = Vec::new();
    for (rank, &i) in order.iter().enumerate() {
        cum += probs[i];
        if cum <= threshold && rank != last {
            remove.push(i);
        }
    }
    for i in remove {
        scores[i] = f32::NEG_INFINITY;
    }
}

/// `MinPLogitsWarper` (min_tokens_to_keep = 1): tokens with probability below
/// `min_p * max_prob` become `-inf`; the most probable token is always kept.
pub fn apply_min_p(scores: &mut [f32], min_p: f32) {
    if scores.is_empty() {
        return;
    }
    let probs = softmax(scores);
    let (best, top) = probs.iter().enumerate().fold((0usize, f64::NEG_INFINITY), |acc, (i, &p)| {
        if p > acc.1 {
            (i, p)
        } else {
            acc
        }
    });
    let thr = min_p as f64 * top;
    for (i, s) in scores.iter_mut().enumerate() {
        if probs[i] < thr && i != best {
            *s = f32::NEG_INFINITY;
        }
    }
}

/// Applies the whole processor list in transformers' order, in place.
pub fn process_logits(scores: &mut [f32], history: &[i64], p: &SamplingParams) {
    apply_logit_bias(scores, &p.logit_bias);
    apply_repetition_penalty(scores, history, p.repetition_penalty);
    if p.do_sample {
        apply_temperature(scores, p.temperature);
        apply_top_k(scores, p.top_k);
        apply_top_p(scores, p.top_p);
        if let Some(m) = p.min_p {
            apply_min_p(scores, m);
        }
    }
}

/// Index of the largest score (first on ties, NaN never wins).
pub fn argmax(scores: &[f32]) -> usize {
    let mut best = 0usize;
    let mut best_v = f32::NEG_INFINITY;
    for (i, &v) in scores.iter().enumerate() {
        if v > best_v {
            best = i;
            best_v = v;
        }
    }
    best
}

/// A small, seedable random generator (SplitMix64) — the same seed gives the same samples on
/// every platform, independent of any external crate's version.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng { state: seed }
    }

    /// A generator seeded from the process' hash randomness (for unseeded sampling).
    pub fn from_entropy() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0),
        );
        Rng::new(h.finish())
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)` with 53 bits of precision.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Draws an index from `softmax(scores)` (multinomial with one sample). `-inf` entries are never
/// drawn. Falls back to the arg-max if every score is `-inf`/NaN.
pub fn sample(scores: &[f32], rng: &mut Rng) -> usize {
    let probs = softmax(scores);
    let total: f64 = probs.iter().filter(|p| p.is_finite()).sum();
    if total.is_nan() || total <= 0.0 {
        return argmax(scores);
    }
    let u = rng.next_f64() * total;
    let mut cum = 0.0;
    let mut last_nonzero = argmax(scores);
    for (i, &p) in probs.iter().enumerate() {
        if p > 0.0 && p.is_finite() {
            cum += p;
            last_nonzero = i;
            if u < cum {
                return i;
            }
        }
    }
    last_nonzero
}

/// Processes `scores` and picks the next token.
pub fn select_token(
    scores: &mut [f32],
    history: &[i64],
    p: &SamplingParams,
    rng: &mut Rng,
) -> usize {
    process_logits(scores, history, p);
    if p.do_sample {
        sample(scores, rng)
    } else {
        argmax(scores)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const NEG: f32 = f32::NEG_INFINITY;

    #[test]
    fn repetition_penalty_divides_positive_multiplies_negative() {
        let mut s = vec![2.0, -2.0, 1.0, 4.0];
        apply_repetition_penalty(&mut s, &[0, 1, 1, 99, -5], 2.0);
        assert_eq!(s, vec![1.0, -4.0, 1.0, 4.0]);
    }

    #[test]
    fn temperature_divides() {
        let mut s = vec![1.0, -3.0];
        apply_temperature(&mut s, 0.5);
        assert_eq!(s, vec![2.0, -6.0]);
    }

    #[test]
    fn top_k_keeps_ties() {
        let mut s = vec![1.0, 3.0, 2.0, 3.0, 0.5];
        apply_top_k(&mut s, 2);
        assert_eq!(s, vec![NEG, 3.0, NEG, 3.0, NEG]);
        let mut s = vec![1.0, 3.0, 2.0, 0.0];
        apply_top_k(&mut s, 2);
        assert_eq!(s, vec![NEG, 3.0, 2.0, NEG]);
    }

    #[test]
    fn top_p_matches_transformers() {
        // probs of ln([0.1, 0.2, 0.3, 0.4]) = [0.1, 0.2, 0.3, 0.4]; ascending cumsum 0.1, 0.3, 0.6, 1.0
        // top_p = 0.7 -> remove cum <= 0.3 -> tokens 0 and 1.
        let mut s: Vec<f32> = [0.1f32, 0.2, 0.3, 0.4].iter().map(|p| p.ln()).collect();
        apply_top_p(&mut s, 0.7);
        assert_eq!(s[0], NEG);
        assert_eq!(s[1], NEG);
        assert!(s[2].is_finite() && s[3].is_finite());
        // top_p tiny: only the best survives
        let mut s: Vec<f32> = [0.1f32, 0.2, 0.3, 0.4].iter().map(|p| p.ln()).collect();
        apply_top_p(&mut s, 0.01);
        assert_eq!(s.iter().filter(|v| v.is_finite()).count(), 1);
        assert!(s[3].is_finite());
    }

    #[test]
    fn min_p_relative_threshold() {
        // probs 0.5, 0.3, 0.15, 0.05; min_p 0.5 -> threshold 0.25 -> keep 0 and 1.
        let mut s: Vec<f32> = [0.5f32, 0.3, 0.15, 0.05].iter().map(|p| p.ln()).collect();
        apply_min_p(&mut s, 0.5);
        assert!(s[0].is_finite() && s[1].is_finite());
        assert_eq!(&s[2..], &[NEG, NEG]);
    }

    #[test]
    fn greedy_ignores_warpers() {
        let p = SamplingParams {
            do_sample: false,
            temperature: 0.1,
            top_k: 1,
            top_p: 0.1,
            ..Default::default()
        };
        let mut s = vec![0.0, 5.0, 4.0];
        let mut rng = Rng::new(0);
        assert_eq!(select_token(&mut s, &[], &p, &mut rng), 1);
        assert_eq!(s, vec![0.0, 5.0, 4.0]);
    }

    #[test]
    fn greedy_with_penalty_changes_choice() {
        let p = SamplingParams { repetition_penalty: 2.0, ..Default::default() };
        let mut s = vec![0.0, 5.0, 4.0];
        assert_eq!(select_token(&mut s, &[1], &p, &mut Rng::new(0)), 2);
    }

    #[test]
    fn seeded_sampling_is_reproducible_and_respects_filters() {
        let p = SamplingParams { do_sample: true, top_k: 3, ..Default::default() };
        let base: Vec<f32> = (0..10).map(|i| i as f32 * 0.3).collect();
        let draw = |seed| {
            let mut rng = Rng::new(seed);
            (0..200).map(|_| select_token(&mut base.clone(), &[], &p, &mut rng)).collect::<Vec<_>>()
        };
        let a = draw(7);
        assert_eq!(a, draw(7));
        assert_ne!(a, draw(8));
        assert!(a.iter().all(|&i| i >= 7), "top-k 3 keeps only 7, 8, 9");
        // all three show up
        for k in 7..10 {
            assert!(a.contains(&k));
        }
    }

    #[test]
    fn sampling_frequencies_follow_probabilities() {
        let probs = [0.7f32, 0.2, 0.1];
        let s: Vec<f32> = probs.iter().map(|p| p.ln()).collect();
        let mut rng = Rng::new(123);
        let mut counts = [0usize; 3];
        for _ in 0..20000 {
            counts[sample(&s, &mut rng)] += 1;
        }
        for (c, p) in counts.iter().zip(probs) {
            let f = *c as f32 / 20000.0;
            assert!((f - p).abs() < 0.02, "{counts:?}");
        }
    }

    #[test]
    fn logit_bias_comes_first_and_steers_greedy_and_sampling() {
        // +100 on the worst token makes it the greedy choice.
        let p = SamplingParams { logit_bias: vec![(0, 100.0)], ..Default::default() };
        let mut s = vec![0.0, 5.0, 4.0];
        assert_eq!(select_token(&mut s, &[], &p, &mut Rng::new(0)), 0);
        assert_eq!(s, vec![100.0, 5.0, 4.0]);
        // -100 bans the best one, also when sampling (with top-k 1 the next best is certain).
        let p = SamplingParams {
            do_sample: true,
            top_k: 1,
            logit_bias: vec![(1, -100.0)],
            ..Default::default()
        };
        let mut rng = Rng::new(3);
        for _ in 0..20 {
            assert_eq!(select_token(&mut [0.0, 5.0, 4.0], &[], &p, &mut rng), 2);
        }
        // Before the repetition penalty (transformers' order): (2 + 2) / 2, not 2 / 2 + 2.
        let p = SamplingParams {
            repetition_penalty: 2.0,
            logit_bias: vec![(0, 2.0), (7, 1.0)],
            ..Default::default()
        };
        let mut s = vec![2.0, 0.0];
        process_logits(&mut s, &[0], &p);
        assert_eq!(s, vec![2.0, 0.0]);
    }

    #[test]
    fn all_filtered_falls_back_to_argmax() {
        assert_eq!(sample(&[NEG, NEG], &mut Rng::new(1)), 0);
        assert_eq!(argmax(&[f32::NAN, 1.0, 3.0]), 2);
    }
}
