//! The one place errors become HTTP answers: a status and an OpenAI error body.

use crate::ErrorBody;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;

/// An error answer: status plus OpenAI body.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The `{"error": ...}` body.
    pub body: ErrorBody,
}

impl ApiError {
    /// A 400 `invalid_request_error`.
    pub fn invalid(message: impl Into<String>, param: Option<&str>) -> Self {
        let mut body = ErrorBody::new("invalid_request_error", message);
        body.error.param = param.map(str::to_string);
        ApiError { status: StatusCode::BAD_REQUEST, body }
    }

    /// 404 `model_not_found` for the model a request named.
    pub fn model_not_found(model: &str) -> Self {
        let msg = format!("The model `{model}` does not exist or you do not have access to it.");
        let body = ErrorBody::new("invalid_request_error", msg).param("model").code("model_not_found");
        ApiError { status: StatusCode::NOT_FOUND, body }
    }

    /// 401 `invalid_api_key`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        let body = ErrorBody::new("invalid_request_error", message).code("invalid_api_key");
        ApiError { status: StatusCode::UNAUTHORIZED, body }
    }

    /// 404 for a path no route serves, as OpenAI answers it.
    pub fn unknown_url(method: &str, path: &str) -> Self {
        let body = ErrorBody::new("invalid_request_error", format!("Unknown request URL: {method} {path}."))
            .code("unknown_url");
        ApiError { status: StatusCode::NOT_FOUND, body }
    }

    /// 405 for a known path with the wrong method.
    pub fn method_not_allowed(method: &str, path: &str) -> Self {
        let body = ErrorBody::new("invalid_request_error", format!("Method {method} is not allowed on {path}."))
            .code("method_not_allowed");
        ApiError { status: StatusCode::METHOD_NOT_ALLOWED, body }
    }

    /// 500 `server_error`.
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError { status: StatusCode::INTERNAL_SERVER_ERROR, body: ErrorBody::new("server_error", message) }
    }
}

impl From<crate::Error> for ApiError {
    fn from(e: crate::Error) -> Self {
        match e {
            crate::Error::InvalidRequest { message, param, code } => {
                let mut body = ErrorBody::new("invalid_request_error", message);
                body.error.param = param;
                body.error.code = code;
                ApiError { status: StatusCode::BAD_REQUEST, body }
            }
            crate::Error::Overloaded(_) => ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                body: ErrorBody::new("server_error", e.to_string()).code("overloaded"),
            },
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let status = match r.status() {
            StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        let text = r.body_text();
        let path = field_path(&text);
        // serde says "unknown field `foo`, expected one of ..."; OpenAI says this.
        if let Some(field) = text.split("unknown field `").nth(1).and_then(|rest| rest.split('`').next()) {
            let msg = format!("Unrecognized request argument supplied: {field}");
            let body = ErrorBody::new("invalid_request_error", msg).param(path.unwrap_or_else(|| field.to_string()));
            return ApiError { status, body };
        }
        let msg = match &r {
            JsonRejection::MissingJsonContentType(_) => {
                "Expected a JSON body with `Content-Type: application/json`".to_string()
            }
            _ if status == StatusCode::PAYLOAD_TOO_LARGE => format!("The request body is too large: {text}"),
            _ => text,
        };
        let mut body = ErrorBody::new("invalid_request_error", msg);
        body.error.param = path;
        ApiError { status, body }
    }
}

/// The field a data error is about, from axum's message ("Failed to deserialize the JSON body
/// into the target type: messages[0].content: invalid type: ..." gives `messages[0].content`).
fn field_path(text: &str) -> Option<String> {
    let (_, rest) = text.split_once("target type: ")?;
    let (path, _) = rest.split_once(": ")?;
    (!path.is_empty() && path != "." && !path.contains(' ')).then(|| path.to_string())
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, Json(self.body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

/// `Json<T>` whose rejections (bad JSON, wrong types, unknown fields, no JSON content type, too
/// large) are OpenAI error bodies.
pub struct OpenAiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for OpenAiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(value) = Json::<T>::from_request(req, state).await?;
        Ok(OpenAiJson(value))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::ChatCompletionRequest;
    use axum::body::Body;

    async fn parse(content_type: Option<&str>, body: &str) -> Result<ChatCompletionRequest, ApiError> {
        let mut req = axum::http::Request::post("/v1/chat/completions");
        if let Some(c) = content_type {
            req = req.header("content-type", c);
        }
        let req = req.body(Body::from(body.to_string())).unwrap();
        OpenAiJson::<ChatCompletionRequest>::from_request(req, &()).await.map(|OpenAiJson(r)| r)
    }

    async fn rejected(content_type: Option<&str>, body: &str) -> ApiError {
        parse(content_type, body).await.expect_err("should be rejected")
    }

    const JSON: Option<&str> = Some("application/json");

    #[tokio::test]
    async fn json_rejections_are_openai_errors() {
        let ok = r#"{"model": "m", "messages": [{"role": "user", "content": "hi"}]}"#;
        assert_eq!(parse(JSON, ok).await.unwrap().model, "m");
        let e = rejected(JSON, r#"{"model": "m", "messages": [], "foo": 1}"#).await;
        assert_eq!((e.status, e.body.error.param.as_deref()), (StatusCode::BAD_REQUEST, Some("foo")));
        assert_eq!(e.body.error.message, "Unrecognized request argument supplied: foo");
        let e = rejected(JSON, r#"{"model": "m", "messages": [], "stream": true, "stream_options": {"x": 1}}"#).await;
        assert_eq!(e.body.error.param.as_deref(), Some("stream_options.x"), "{:?}", e.body);
        let e = rejected(JSON, r#"{"model": "m", "messages": [], "temperature": "hot"}"#).await;
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.body.error.param.as_deref(), Some("temperature"), "{:?}", e.body);
        let e = rejected(JSON, r#"{"model": "m", "messages": [{"role": "user", "content": 5}]}"#).await;
        assert_eq!(e.body.error.param.as_deref(), Some("messages[0].content"), "{:?}", e.body);
        let e = rejected(JSON, r#"{"model": "m", "#).await;
        assert_eq!((e.status, e.body.error.kind.as_str()), (StatusCode::BAD_REQUEST, "invalid_request_error"));
        assert_eq!(e.body.error.param, None);
        let e = rejected(None, ok).await;
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.body.error.message.contains("Content-Type: application/json"), "{:?}", e.body);
    }

    #[test]
    fn facade_errors_map_to_statuses() {
        let invalid = crate::Error::InvalidRequest {
            message: "too long".into(),
            param: Some("messages".into()),
            code: Some("context_length_exceeded".into()),
        };
        let e = ApiError::from(invalid);
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.body.error.code.as_deref(), Some("context_length_exceeded"));
        let e = ApiError::from(crate::Error::Overloaded("queue full".into()));
        assert_eq!((e.status, e.body.error.code.as_deref()), (StatusCode::SERVICE_UNAVAILABLE, Some("overloaded")));
        assert_eq!(ApiError::from(crate::Error::Internal("x".into())).status, StatusCode::INTERNAL_SERVER_ERROR);
    }
}
