//! `GET /v1/models` and `GET /v1/models/{id}`.

use crate::{ModelInfo, ModelList};
use axum::extract::{Path, State};
use axum::Json;

use super::errors::ApiError;
use super::AppState;

/// Every deployment.
pub async fn list(State(state): State<AppState>) -> Json<ModelList> {
    Json(ModelList::new(state.registry.deployments().iter().map(|d| d.info()).collect()))
}

/// The deployment `id` names (any form a request's `model` may take), or 404.
pub async fn get(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<ModelInfo>, ApiError> {
    state.registry.resolve(&id).map(|d| Json(d.info())).ok_or_else(|| ApiError::model_not_found(&id))
}
