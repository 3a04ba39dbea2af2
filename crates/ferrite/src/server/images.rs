//! `POST /v1/images/generations`.

use crate::ImageGenerationRequest;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::errors::{ApiError, OpenAiJson};
use super::AppState;

/// Answers with `n` base64 PNGs. Without `model`, the first image model served answers (as
/// hosted APIs default to theirs); a text model answers 400, an unknown one 404. A client that
/// hangs up cancels its job after the current denoising step (axum drops this future).
pub async fn create(
    State(state): State<AppState>,
    OpenAiJson(req): OpenAiJson<ImageGenerationRequest>,
) -> Result<Response, ApiError> {
    let deployment = match &req.model {
        Some(model) => state.registry.resolve(model).ok_or_else(|| ApiError::model_not_found(model))?,
        None => state.registry.deployments().iter().find(|d| d.engine.is_image_model()).ok_or_else(|| {
            ApiError::invalid("no image model is served here: name one with the model parameter", Some("model"))
        })?,
    };
    let resp = deployment.engine.generate_images(req).await?;
    Ok(Json(resp).into_response())
}
