//! Grammar-constrained decoding for ferrite: guaranteed JSON (any object, or valid under a JSON
//! schema) and Lark grammars, enforced on the logits through [llguidance].
//!
//! * [`GrammarVocabulary`]: the model's vocabulary compiled for llguidance (a token trie over
//!   the exact bytes of each token, end-of-generation ids as EOS, control tokens out of reach of
//!   text). Expensive to build; build it once per model and share it.
//! * [`Constraint`]: what the output must match: [`Constraint::JsonObject`],
//!   [`Constraint::JsonSchema`] or [`Constraint::Lark`] (llguidance's Lark dialect, with
//!   `%json { schema }` embedded, e.g. for tool calls).
//! * [`GrammarProcessor`]: a [`ferrite_scheduler::LogitsProcessor`] that follows one choice's
//!   tokens through the grammar and sets every token the grammar cannot accept next to minus
//!   infinity; once the grammar is complete, only end-of-generation tokens remain.
//!
//! [llguidance]: https://github.com/guidance-ai/llguidance

mod constraint;
mod error;
mod processor;
mod vocabulary;

#[cfg(test)]
mod tests;

pub use constraint::{Constraint, MAX_WHITESPACE};
pub use error::GrammarError;
pub use processor::GrammarProcessor;
pub use vocabulary::{CompiledGrammar, GrammarVocabulary};
