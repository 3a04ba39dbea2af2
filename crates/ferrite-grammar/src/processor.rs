//! [`GrammarProcessor`]: one choice's grammar state, applied to its logits at every step.

use std::sync::Arc;

use ferrite_scheduler::LogitsProcessor;
use llguidance::toktrie::SimpleVob;
use llguidance::Matcher;

/// Masks one choice's logits to the tokens its grammar accepts next.
///
/// At each call it first advances the grammar by the tokens appended to `generated` since the
/// previous call (none on the first call, and none when the engine recomputes a preempted
/// sequence), then sets the logit of every token the grammar rejects to minus infinity. Once
/// the grammar is complete only end-of-generation tokens remain. Should the grammar ever fail
/// (a token it did not allow, an internal error), the choice is ended the same way, with only
/// end-of-generation tokens allowed, and the error is logged once to stderr: never a panic.
pub struct GrammarProcessor {
    matcher: Matcher,
    eog: Arc<[u32]>,
    vocab_size: usize,
    consumed: usize,
    failed: Option<String>,
}

impl std::fmt::Debug for GrammarProcessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrammarProcessor")
            .field("consumed", &self.consumed)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl GrammarProcessor {
    pub(crate) fn new(matcher: Matcher, eog: Arc<[u32]>, vocab_size: usize) -> Self {
        GrammarProcessor { matcher, eog, vocab_size, consumed: 0, failed: None }
    }

    /// The grammar's error, if it failed (the choice then only allows end-of-generation).
    pub fn error(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// Whether the grammar is complete: nothing but end-of-generation may follow.
    pub fn is_complete(&self) -> bool {
        self.failed.is_none() && self.matcher.is_stopped()
    }

    /// The tokens allowed after `generated`, advancing the grammar to it first.
    fn allowed(&mut self, generated: &[u32]) -> Result<SimpleVob, String> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let Some(new) = generated.get(self.consumed..) else {
            return Err(format!(
                "the choice has {} tokens, fewer than the {} the grammar consumed",
                generated.len(),
                self.consumed
            ));
        };
        if !new.is_empty() {
            self.matcher.consume_tokens(new).map_err(|e| e.to_string())?;
            self.consumed = generated.len();
        }
        self.matcher.compute_mask_or_eos().map_err(|e| e.to_string())
    }
}

impl LogitsProcessor for GrammarProcessor {
    fn process(&mut self, generated: &[u32], logits: &mut [f32]) {
        match self.allowed(generated) {
            Ok(mask) => {
                let n = self.vocab_size.min(mask.len());
                for (id, l) in logits.iter_mut().enumerate() {
                    if id >= n || !mask.is_allowed(id as u32) {
                        *l = f32::NEG_INFINITY;
                    }
                }
            }
            Err(e) => {
                if self.failed.is_none() {
                    eprintln!("ferrite: grammar constraint failed, ending the choice: {e}");
                    self.failed = Some(e);
                }
                for (id, l) in logits.iter_mut().enumerate() {
                    if !self.eog.contains(&(id as u32)) {
                        *l = f32::NEG_INFINITY;
                    }
                }
            }
        }
    }
}
