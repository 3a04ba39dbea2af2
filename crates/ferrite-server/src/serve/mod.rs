//! `ferrite serve`: the OpenAI-compatible HTTP server over [`ferrite::Engine`].
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

use anyhow::{Context, Result};

use auth::ApiKeys;
use metrics::Metrics;
use registry::{DeploymentSpec, EngineSettings, ModelRegistry};

/// What every handler can reach.
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

/// Loads the models, binds, prints `ferrite: listening on http://HOST:PORT` to stderr, and
/// serves until SIGTERM or ctrl-c; then lets requests in flight finish and returns.
pub fn run(config: ServeConfig) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("ferrite-http")
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(config))
}

async fn serve(config: ServeConfig) -> Result<()> {
    let ServeConfig { host, port, models, engine, api_keys } = config;
    let registry = tokio::task::spawn_blocking(move || ModelRegistry::load(models, &engine))
        .await
        .context("loading the models")??;
    let env_keys = std::env::var(auth::API_KEYS_ENV).ok();
    let state = AppState {
        registry: Arc::new(registry),
        metrics: Arc::new(Metrics::default()),
        keys: ApiKeys::new(&api_keys, env_keys.as_deref()),
    };
    let listener =
        tokio::net::TcpListener::bind((host.as_str(), port)).await.with_context(|| format!("binding {host}:{port}"))?;
    let addr = listener.local_addr().context("reading the bound address")?;
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
        .context("serving HTTP")?;
    eprintln!("ferrite: stopped");
    Ok(())
}
