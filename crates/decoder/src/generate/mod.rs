//! Generation, split the way a serving engine needs it:
//!
//! * [`RequestState`] — everything that belongs to one request: its sampling settings and seeded
//!   RNG, stop conditions, streaming detokenizer, token budget, generated ids. Token selection
//!   reads only this state and the row's logits, so a row's tokens do not depend on which other
//!   rows share its batch.
//! * [`Prefill`] — one prompt run through the decoder in chunks of any size (the engine puts
//!   other users' decode steps between chunks); the last chunk's logits equal a one-shot prefill's.
//! * [`RunningBatch`] — one KV cache for the rows being decoded. It admits a prefilled row at
//!   any step (left-padding whichever side is shorter) and drops finished or cancelled rows
//!   (gathering the cache rows out and trimming the padding they no longer need). Copies happen
//!   only on these membership changes, never on an ordinary decode step.
//! * [`Generation`] — the one-call API (`LanguageModel::stream` / `generate`): a batch prefilled
//!   together, then decoded in a [`RunningBatch`].

mod generation;
mod prefill;
mod request;
mod running_batch;
mod types;

pub use generation::Generation;
pub(crate) use generation::Start;
pub use prefill::{Prefill, Prefilled};
pub use request::RequestState;
pub use running_batch::RunningBatch;
pub use types::{
    FinishReason, GenerationResult, LmTimings, RowOutput, Sequence, TokenEvent, TokenLogprobs,
};
