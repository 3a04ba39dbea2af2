//! `POST /v1/completions`.

use std::time::Instant;

use crate::CompletionRequest;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;

use super::errors::{ApiError, OpenAiJson};
use super::sse::{self, FirstChunkTimer};
use super::AppState;

/// Answers with one JSON body, or with server-sent chunks when `stream` is set.
pub async fn create(
    State(state): State<AppState>,
    OpenAiJson(req): OpenAiJson<CompletionRequest>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let deployment = state.registry.resolve(&req.model).ok_or_else(|| ApiError::model_not_found(&req.model))?;
    let model = req.model.clone();
    if req.stream {
        let chunks = deployment.engine.complete_stream(req)?.map(move |chunk| {
            chunk.map(|mut c| {
                c.model.clone_from(&model);
                c
            })
        });
        let timer = FirstChunkTimer { metrics: state.metrics.clone(), model: deployment.id.clone(), started };
        return Ok(sse::response(chunks, Some(timer)));
    }
    let mut resp = deployment.engine.complete(req).await?;
    resp.model = model;
    Ok(Json(resp).into_response())
}
