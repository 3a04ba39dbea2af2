//! `GET /models`: the models a server offers.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `{"object":"list","data":[...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ModelList {
    /// Always `"list"`.
    pub object: String,
    /// The models.
    pub data: Vec<ModelInfo>,
}

impl ModelList {
    /// A list of these models.
    pub fn new(data: Vec<ModelInfo>) -> Self {
        ModelList { object: "list".into(), data }
    }
}

/// One model (`GET /models/{id}` answers one of these).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ModelInfo {
    /// The name to put in a request's `model` field.
    pub id: String,
    /// Always `"model"`.
    pub object: String,
    /// Unix time (seconds) the model was loaded or registered.
    pub created: u64,
    /// Who serves it (ferrite answers `"ferrite"`).
    pub owned_by: String,
}

impl ModelInfo {
    /// A model entry.
    pub fn new(id: impl Into<String>, created: u64, owned_by: impl Into<String>) -> Self {
        ModelInfo { id: id.into(), object: "model".into(), created, owned_by: owned_by.into() }
    }
}
