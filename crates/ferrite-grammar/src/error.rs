//! Errors of grammar compilation.

/// Why a constraint or a vocabulary could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrammarError {
    /// The tokenizer cannot serve as a grammar vocabulary (e.g. it has no end-of-generation id).
    #[error("vocabulary: {0}")]
    Vocabulary(String),
    /// The schema or grammar is invalid or unsupported.
    #[error("invalid grammar: {0}")]
    Invalid(String),
}
