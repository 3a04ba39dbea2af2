//! Errors of model loading and execution.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Tensor(#[from] ferrite_tensor::Error),
    #[error("model config: {0}")]
    Config(String),
    #[error("unsupported architecture `{0}` (supported: llama, qwen2, gemma3)")]
    UnsupportedArch(String),
    #[error("missing weight `{0}`")]
    MissingWeight(String),
    #[error("i/o error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid batch: {0}")]
    Batch(String),
    #[error("cancelled")]
    Cancelled,
}

pub type Result<T> = std::result::Result<T, Error>;
