//! API keys: `--api-key KEY` (repeatable) and `FERRITE_API_KEYS` (comma-separated). When any is
//! set, the `/v1` routes need `Authorization: Bearer KEY`; `/health`, `/metrics` and
//! `/openapi.json` stay open (for probes and scrapers, as vLLM does).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::errors::ApiError;

/// The environment variable holding extra keys, comma-separated.
pub const API_KEYS_ENV: &str = "FERRITE_API_KEYS";

/// The accepted keys; none means the server is open.
#[derive(Debug, Clone, Default)]
pub struct ApiKeys(Arc<Vec<String>>);

impl ApiKeys {
    /// The keys from the flags plus those in `env` (a comma-separated list; blanks skipped).
    pub fn new(flags: &[String], env: Option<&str>) -> Self {
        let from_env = env.into_iter().flat_map(|v| v.split(','));
        let keys = flags.iter().map(String::as_str).chain(from_env).map(str::trim).filter(|k| !k.is_empty());
        ApiKeys(Arc::new(keys.map(str::to_string).collect()))
    }

    /// Whether requests need no key.
    pub fn is_open(&self) -> bool {
        self.0.is_empty()
    }

    /// Accepts an `Authorization` header value carrying one of the keys.
    pub fn check(&self, authorization: Option<&[u8]>) -> Result<(), ApiError> {
        if self.is_open() {
            return Ok(());
        }
        let Some(value) = authorization else {
            return Err(ApiError::unauthorized(
                "You didn't provide an API key. You need to provide your API key in an Authorization header using \
                 Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            ));
        };
        let token = value.get(..7).filter(|s| s.eq_ignore_ascii_case(b"bearer ")).map(|_| value[7..].trim_ascii());
        match token {
            Some(t) if self.0.iter().any(|k| same(k.as_bytes(), t)) => Ok(()),
            _ => Err(ApiError::unauthorized("Incorrect API key provided.")),
        }
    }
}

/// Compares without stopping at the first difference, so timing does not reveal a key's prefix.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Middleware rejecting requests without a valid key with 401.
pub async fn require_key(State(keys): State<ApiKeys>, req: Request, next: Next) -> Response {
    match keys.check(req.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes())) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_from_flags_and_env() {
        let keys = ApiKeys::new(&["a".into()], Some("b, c,,"));
        assert!(keys.check(Some(b"Bearer a")).is_ok());
        assert!(keys.check(Some(b"bearer c")).is_ok());
        assert!(keys.check(Some(b"Bearer  b ")).is_ok());
        assert!(keys.check(Some(b"Bearer d")).is_err());
        assert!(keys.check(Some(b"Basic a")).is_err());
        assert!(keys.check(Some(b"a")).is_err());
        assert_eq!(keys.check(None).map_err(|e| e.status.as_u16()), Err(401));
        assert!(ApiKeys::new(&[], Some(" , ")).is_open());
        assert!(ApiKeys::new(&[], None).check(None).is_ok());
    }
}
