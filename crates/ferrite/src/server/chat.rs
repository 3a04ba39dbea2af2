//! `POST /v1/chat/completions`.

use crate::ChatCompletionRequest;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;

use super::errors::{ApiError, OpenAiJson};
use super::sse;
use super::AppState;

/// Answers with one JSON body, or with server-sent chunks when `stream` is set.
pub async fn create(
    State(state): State<AppState>,
    OpenAiJson(req): OpenAiJson<ChatCompletionRequest>,
) -> Result<Response, ApiError> {
    let deployment = state.registry.resolve(&req.model).ok_or_else(|| ApiError::model_not_found(&req.model))?;
    let model = req.model.clone();
    if req.stream {
        let chunks = deployment.engine.chat_stream(req)?.map(move |chunk| {
            chunk.map(|mut c| {
                c.model.clone_from(&model);
                c
            })
        });
        return Ok(sse::response(chunks));
    }
    let mut resp = deployment.engine.chat(req).await?;
    resp.model = model;
    Ok(Json(resp).into_response())
}
