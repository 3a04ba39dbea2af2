//! `POST /v1/embeddings`.

use crate::EmbeddingRequest;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::errors::{ApiError, OpenAiJson};
use super::AppState;

/// Answers with one vector per input (a generative model answers 400, an unknown one 404).
pub async fn create(
    State(state): State<AppState>,
    OpenAiJson(req): OpenAiJson<EmbeddingRequest>,
) -> Result<Response, ApiError> {
    let deployment = state.registry.resolve(&req.model).ok_or_else(|| ApiError::model_not_found(&req.model))?;
    let model = req.model.clone();
    let mut resp = deployment.engine.embed(req).await?;
    resp.model = model;
    Ok(Json(resp).into_response())
}
