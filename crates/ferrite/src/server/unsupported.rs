//! `POST /v1/images/generations`: no model served today can do this, so it answers a clear
//! OpenAI error (404 for an unknown model, else 400), never a silent 200.

use axum::extract::State;
use serde_json::Value;

use super::errors::{ApiError, OpenAiJson};
use super::AppState;

/// Rejects an image generation request.
pub async fn images(state: State<AppState>, body: OpenAiJson<Value>) -> ApiError {
    reject(state, body, "image generation")
}

fn reject(State(state): State<AppState>, OpenAiJson(body): OpenAiJson<Value>, feature: &str) -> ApiError {
    let Some(model) = body.get("model").and_then(Value::as_str) else {
        return ApiError::invalid("you must provide a model parameter", Some("model"));
    };
    if state.registry.resolve(model).is_none() {
        return ApiError::model_not_found(model);
    }
    ApiError::invalid(format!("model {model} does not support {feature}"), Some("model"))
}
