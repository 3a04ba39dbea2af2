//! The one error type of this crate.

use crate::DType;

/// Everything that can go wrong in the tensor core, the backends and the model-file readers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("i/o error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("malformed {format} file: {reason}")]
    Malformed { format: &'static str, reason: String },
    #[error("tensor `{0}` not found")]
    TensorNotFound(String),
    #[error("unsupported dtype {dtype:?} for {op}")]
    UnsupportedDType { dtype: DType, op: &'static str },
    #[error("unknown {format} tensor type {id}")]
    UnknownDType { format: &'static str, id: String },
    #[error("shape mismatch in {op}: {msg}")]
    Shape { op: &'static str, msg: String },
    #[error("tensor of {numel} elements of {dtype:?} is not a whole number of {block}-element blocks")]
    NotBlockAligned { dtype: DType, numel: usize, block: usize },
    #[error("tensor lives on {actual}, {op} expected {expected}")]
    DeviceMismatch { op: &'static str, expected: String, actual: String },
    #[error("storage is read-only (memory-mapped) and cannot be written by {op}")]
    ReadOnly { op: &'static str },
    #[error("index {index} out of range 0..{len} in {op}")]
    OutOfRange { op: &'static str, index: usize, len: usize },
    #[error("backend error: {0}")]
    Backend(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A shape error of `op`.
    pub fn shape(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Shape { op, msg: msg.into() }
    }
}
