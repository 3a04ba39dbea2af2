//! The route table: every path the server answers, its handler, and what the OpenAPI document
//! says about it. `router` and `openapi::document` both read this table, so they cannot drift.

use crate::{
    ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse, CompletionChunk, CompletionRequest,
    CompletionResponse, EmbeddingRequest, EmbeddingResponse, ImageGenerationRequest, ImagesResponse, ModelInfo,
    ModelList,
};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, Method, Uri};
use axum::response::IntoResponse;
use axum::routing::{get, post, MethodRouter};
use axum::{middleware, Router};
use schemars::{json_schema, Schema, SchemaGenerator};

use super::errors::ApiError;
use super::{auth, chat, completions, embeddings, images, lifecycle, metrics, models, openapi, AppState};

/// Largest request body accepted; larger ones get 413.
pub const BODY_LIMIT: usize = 32 * 1024 * 1024;

/// The prefixes the OpenAI routes are served under (`/v1/openai` for clients configured with
/// that base URL, as some gateways expect).
pub const API_PREFIXES: [&str; 2] = ["/v1", "/v1/openai"];

/// The methods the table uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    /// GET.
    Get,
    /// POST.
    Post,
}

impl HttpMethod {
    /// Lower-case, as OpenAPI keys operations.
    pub fn openapi_key(self) -> &'static str {
        match self {
            HttpMethod::Get => "get",
            HttpMethod::Post => "post",
        }
    }
}

/// What answers a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /chat/completions`.
    ChatCompletions,
    /// `POST /completions`.
    Completions,
    /// `GET /models`.
    ListModels,
    /// `GET /models/{id}`.
    GetModel,
    /// `POST /embeddings`.
    Embeddings,
    /// `POST /images/generations`.
    Images,
    /// `GET /health`.
    Health,
    /// `GET /ready`.
    Ready,
    /// `GET /metrics`.
    Metrics,
    /// `GET /openapi.json`.
    OpenApi,
}

/// A JSON schema for the OpenAPI document.
pub type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// HTTP method.
    pub method: HttpMethod,
    /// Path (after the API prefix when `api` is set).
    pub path: &'static str,
    /// Served under each of [`API_PREFIXES`] and behind the API keys.
    pub api: bool,
    /// The handler.
    pub endpoint: Endpoint,
    /// OpenAPI `operationId`.
    pub operation_id: &'static str,
    /// One-line description.
    pub summary: &'static str,
    /// JSON request body.
    pub request: Option<SchemaFn>,
    /// The 200 answer, as JSON (`None`: plain text).
    pub response: Option<SchemaFn>,
    /// The 200 answer's chunks when the request streams.
    pub stream: Option<SchemaFn>,
}

const fn route(
    method: HttpMethod,
    path: &'static str,
    api: bool,
    endpoint: Endpoint,
    operation_id: &'static str,
) -> Route {
    Route { method, path, api, endpoint, operation_id, summary: "", request: None, response: None, stream: None }
}

/// Every route.
pub const ROUTES: &[Route] = &[
    Route {
        summary: "Creates a model response for a chat conversation.",
        request: Some(|g| g.subschema_for::<ChatCompletionRequest>()),
        response: Some(|g| g.subschema_for::<ChatCompletionResponse>()),
        stream: Some(|g| g.subschema_for::<ChatCompletionChunk>()),
        ..route(HttpMethod::Post, "/chat/completions", true, Endpoint::ChatCompletions, "createChatCompletion")
    },
    Route {
        summary: "Creates a completion for a prompt (legacy text completions).",
        request: Some(|g| g.subschema_for::<CompletionRequest>()),
        response: Some(|g| g.subschema_for::<CompletionResponse>()),
        stream: Some(|g| g.subschema_for::<CompletionChunk>()),
        ..route(HttpMethod::Post, "/completions", true, Endpoint::Completions, "createCompletion")
    },
    Route {
        summary: "Lists the models served.",
        response: Some(|g| g.subschema_for::<ModelList>()),
        ..route(HttpMethod::Get, "/models", true, Endpoint::ListModels, "listModels")
    },
    Route {
        summary: "Describes a model: `NAME`, `NAME:VERSION`, `deploy_id:ID` or an alias.",
        response: Some(|g| g.subschema_for::<ModelInfo>()),
        ..route(HttpMethod::Get, "/models/{id}", true, Endpoint::GetModel, "retrieveModel")
    },
    Route {
        summary: "Creates embedding vectors of the inputs (embedding models; others answer 400).",
        request: Some(|g| g.subschema_for::<EmbeddingRequest>()),
        response: Some(|g| g.subschema_for::<EmbeddingResponse>()),
        ..route(HttpMethod::Post, "/embeddings", true, Endpoint::Embeddings, "createEmbedding")
    },
    Route {
        summary: "Creates images of a prompt as base64 PNGs (image models; `model` defaults to the first one \
                  served, and text models answer 400).",
        request: Some(|g| g.subschema_for::<ImageGenerationRequest>()),
        response: Some(|g| g.subschema_for::<ImagesResponse>()),
        ..route(HttpMethod::Post, "/images/generations", true, Endpoint::Images, "createImage")
    },
    Route {
        summary: "Liveness: 200 while the server runs (never needs a key).",
        ..route(HttpMethod::Get, "/health", false, Endpoint::Health, "health")
    },
    Route {
        summary:
            "Readiness: 200 when serving; 503 with Retry-After while the models load and while draining after SIGTERM.",
        ..route(HttpMethod::Get, "/ready", false, Endpoint::Ready, "ready")
    },
    Route {
        summary: "Prometheus metrics (text format).",
        ..route(HttpMethod::Get, "/metrics", false, Endpoint::Metrics, "metrics")
    },
    Route {
        summary: "This OpenAPI document.",
        response: Some(|_| json_schema!({"type": "object"})),
        ..route(HttpMethod::Get, "/openapi.json", false, Endpoint::OpenApi, "openapi")
    },
];

fn handler(endpoint: Endpoint) -> MethodRouter<AppState> {
    match endpoint {
        Endpoint::ChatCompletions => post(chat::create),
        Endpoint::Completions => post(completions::create),
        Endpoint::ListModels => get(models::list),
        Endpoint::GetModel => get(models::get),
        Endpoint::Embeddings => post(embeddings::create),
        Endpoint::Images => post(images::create),
        Endpoint::Health => get(|| async { "ok" }),
        Endpoint::Ready => get(|State(s): State<AppState>| lifecycle::ready(State(s.lifecycle))),
        Endpoint::Metrics => get(metrics::scrape),
        Endpoint::OpenApi => get(|| async { ([(header::CONTENT_TYPE, "application/json")], openapi::document_text()) }),
    }
}

/// The axum path of a table path (`{id}` of `GET /models/{id}` may hold slashes).
fn axum_path(prefix: &str, path: &str) -> String {
    format!("{prefix}{}", path.replace("{id}", "{*id}"))
}

/// The application: every route of the table, API keys and the drain gate on the `/v1`
/// routes, metrics on all,
/// OpenAI error bodies for unknown paths, wrong methods and bodies over [`BODY_LIMIT`].
pub fn router(state: AppState) -> Router {
    let mut api = Router::new();
    let mut open = Router::new();
    for r in ROUTES {
        if r.api {
            for prefix in API_PREFIXES {
                api = api.route(&axum_path(prefix, r.path), handler(r.endpoint));
            }
        } else {
            open = open.route(r.path, handler(r.endpoint));
        }
    }
    let api = api
        .route_layer(middleware::from_fn_with_state(state.keys.clone(), auth::require_key))
        .route_layer(middleware::from_fn_with_state(state.lifecycle.clone(), lifecycle::gate));
    api.merge(open)
        .fallback(|method: Method, uri: Uri| async move { ApiError::unknown_url(method.as_str(), uri.path()) })
        .method_not_allowed_fallback(|method: Method, uri: Uri| async move {
            ApiError::method_not_allowed(method.as_str(), uri.path()).into_response()
        })
        .layer(middleware::from_fn_with_state(state.clone(), metrics::track))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}
