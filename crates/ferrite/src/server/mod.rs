//! The OpenAI-compatible HTTP server over [`crate::Engine`] (feature `server`): what
//! `ferrite serve` runs, for programs that serve the API themselves.
//!
//! ```no_run
//! use ferrite::server::registry::{DeploymentSpec, EngineSettings};
//! use ferrite::server::ServeConfig;
//!
//! let model = DeploymentSpec { name: "smollm2".into(), path: "smollm2".into(), ..Default::default() };
//! let config = ServeConfig::new("127.0.0.1", 8080, vec![model], EngineSettings::default());
//! // Blocks until SIGTERM or ctrl-c; inside an async program, `serve(config).await` instead,
//! // or `router` to mount the routes in your own axum application.
//! ferrite::server::run(config)?;
//! # Ok::<(), ferrite::server::ServerError>(())
//! ```
//!
//! One file per concern: `routes` (the route table), `chat`, `completions`, `embeddings`, `models` and
//! `unsupported` (handlers), `errors` (errors to status and OpenAI body), `sse` (streaming),
//! `auth` (API keys), `registry` (deployments and model names), `metrics`, `shutdown` and
//! `openapi`. The server only parses, routes and frames: validation, templates and generation
//! are the facade's.

mod auth;
mod chat;
mod completions;
mod embeddings;
mod errors;
mod metrics;
mod models;
pub mod openapi;
pub mod registry;
mod routes;
mod shutdown;
mod sse;
mod unsupported;

use std::sync::Arc;

use auth::ApiKeys;
use metrics::Metrics;
use registry::{DeploymentSpec, EngineSettings, ModelRegistry};

/// Why the server could not start or stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A bad config file or flag (duplicate names, unreadable file, ...).
    #[error("{0}")]
    Config(String),
    /// A model failed to load.
    #[error("loading model {name:?}: {source}")]
    Load {
        /// The deployment's name.
        name: String,
        /// What the engine said.
        source: crate::Error,
    },
    /// The address could not be bound, or serving failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServerError {
    let what = what.into();
    move |source| ServerError::Io { what, source }
}

/// What every handler can reach: the deployments, the metrics and the accepted API keys.
#[derive(Clone)]
pub struct AppState {
    registry: Arc<ModelRegistry>,
    metrics: Arc<Metrics>,
    keys: ApiKeys,
}

/// Everything `ferrite serve` needs, from flags and the config file.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address to bind.
    pub host: String,
    /// Port to bind (0 picks a free one).
    pub port: u16,
    /// The deployments.
    pub models: Vec<DeploymentSpec>,
    /// How to build their engines.
    pub engine: EngineSettings,
    /// `--api-key` values (`FERRITE_API_KEYS` is read here too).
    pub api_keys: Vec<String>,
}

impl ServeConfig {
    /// Serves `models` on `host:port` with `engine` settings and no API keys.
    pub fn new(host: &str, port: u16, models: Vec<DeploymentSpec>, engine: EngineSettings) -> Self {
        ServeConfig { host: host.to_string(), port, models, engine, api_keys: Vec::new() }
    }
}

impl AppState {
    /// Loads the deployments' engines (slow: call it off the async threads) and takes the API
    /// keys (`api_keys`, plus `FERRITE_API_KEYS`).
    pub fn load(
        models: Vec<DeploymentSpec>,
        engine: &EngineSettings,
        api_keys: &[String],
    ) -> Result<Self, ServerError> {
        let registry = ModelRegistry::load(models, engine)?;
        let env_keys = std::env::var(auth::API_KEYS_ENV).ok();
        Ok(AppState {
            registry: Arc::new(registry),
            metrics: Arc::new(Metrics::default()),
            keys: ApiKeys::new(api_keys, env_keys.as_deref()),
        })
    }
}

/// The axum router of the whole API (`/v1/...`, `/v1/openai/...`, `/health`, `/metrics`,
/// `/openapi.json`), to serve or to nest in a larger application.
pub fn router(state: AppState) -> axum::Router {
    routes::router(state)
}

/// Loads the models, binds, prints `ferrite: listening on http://HOST:PORT` to stderr, and
/// serves until SIGTERM or ctrl-c; then lets requests in flight finish and returns.
pub fn run(config: ServeConfig) -> Result<(), ServerError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("ferrite-http")
        .enable_all()
        .build()
        .map_err(io("starting the async runtime"))?;
    runtime.block_on(serve(config))
}

/// [`run`] inside a running tokio runtime (multi-threaded, with I/O and timers enabled).
pub async fn serve(config: ServeConfig) -> Result<(), ServerError> {
    let ServeConfig { host, port, models, engine, api_keys } = config;
    let state = tokio::task::spawn_blocking(move || AppState::load(models, &engine, &api_keys))
        .await
        .map_err(|e| ServerError::Config(format!("loading the models: {e}")))??;
    let listener =
        tokio::net::TcpListener::bind((host.as_str(), port)).await.map_err(io(format!("binding {host}:{port}")))?;
    let addr = listener.local_addr().map_err(io("reading the bound address"))?;
    let names: Vec<&str> = state.registry.deployments().iter().map(|d| d.id.as_str()).collect();
    eprintln!(
        "ferrite: serving {}{}",
        names.join(", "),
        if state.keys.is_open() { "" } else { " (API keys required)" }
    );
    eprintln!("ferrite: listening on http://{addr}");
    axum::serve(listener, routes::router(state))
        .with_graceful_shutdown(shutdown::signal())
        .await
        .map_err(io("serving HTTP"))?;
    eprintln!("ferrite: stopped");
    Ok(())
}
