//! The crate's error type.

/// Everything that can go wrong while building or using a tokenizer or a chat template.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A GGUF metadata key the tokenizer needs is missing or has the wrong type.
    #[error("GGUF metadata key `{key}`: {problem}")]
    Metadata {
        /// The metadata key, e.g. `tokenizer.ggml.tokens`.
        key: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The vocabulary uses a tokenizer model or pre-tokenizer we do not implement.
    #[error("unsupported tokenizer: {0}")]
    Unsupported(String),
    /// A token id outside the vocabulary.
    #[error("token id {id} is outside the vocabulary of {vocab_size} tokens")]
    TokenOutOfRange {
        /// The offending id.
        id: u32,
        /// The vocabulary size.
        vocab_size: usize,
    },
    /// Reading a tokenizer file failed.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file (e.g. `tokenizer_config.json`) could not be parsed.
    #[error("parsing {path}: {source}")]
    Json {
        /// The file.
        path: String,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
    /// The Hugging Face `tokenizers` library reported an error.
    #[error("tokenizers: {0}")]
    Tokenizers(String),
    /// A chat template failed to compile or to render. For a template that calls
    /// `raise_exception(msg)` (typically rejecting the conversation: a role it does not know,
    /// roles out of order) the payload is exactly `msg`; otherwise it is the template engine's
    /// description of the problem, with the template line.
    #[error("chat template: {0}")]
    Template(String),
    /// Tool definitions a tool-call grammar cannot be built from (no tools, a named function
    /// that is not among them, a tool without a name).
    #[error("tool calls: {0}")]
    ToolCalls(String),
    /// An error from the GGUF reader.
    #[error(transparent)]
    Tensor(#[from] ferrite_tensor::error::Error),
}

impl From<tokenizers::Error> for Error {
    fn from(e: tokenizers::Error) -> Self {
        Error::Tokenizers(e.to_string())
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
