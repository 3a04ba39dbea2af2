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
//! One file per concern: `routes` (the route table), `chat`, `completions`, `embeddings`, `images`
//! and `models` (handlers), `errors` (errors to status and OpenAI body), `sse` (streaming),
//! `auth` (API keys), `registry` (deployments and model names), `metrics`, `lifecycle`
//! (readiness and draining), `shutdown` (signals), `log` (structured lines) and `openapi`. The server only parses, routes and frames: validation, templates and generation
//! are the facade's.

mod auth;
mod chat;
mod completions;
mod embeddings;
mod errors;
mod images;
pub mod lifecycle;
mod log;
mod metrics;
mod models;
pub mod openapi;
pub mod registry;
mod routes;
mod shutdown;
mod sse;

use std::future::IntoFuture;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use auth::ApiKeys;
use axum::extract::Request;
use axum::response::IntoResponse;
use lifecycle::{Lifecycle, Phase};
use metrics::Metrics;
use registry::{DeploymentSpec, EngineSettings, ModelRegistry};
use serde_json::json;

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
    /// The drain after SIGTERM was cut short (drain timeout or a second signal): the requests
    /// still in flight were answered with an error.
    #[error("shutdown: {reason}: {requests} request(s) in flight were answered with an error")]
    DrainCut {
        /// Why.
        reason: String,
        /// Requests cut.
        requests: usize,
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
    lifecycle: Arc<Lifecycle>,
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
    /// After SIGTERM, how long requests in flight may take to finish before they are cut.
    pub drain_timeout: Duration,
}

/// The default [`ServeConfig::drain_timeout`].
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

impl ServeConfig {
    /// Serves `models` on `host:port` with `engine` settings and no API keys.
    pub fn new(host: &str, port: u16, models: Vec<DeploymentSpec>, engine: EngineSettings) -> Self {
        ServeConfig {
            host: host.to_string(),
            port,
            models,
            engine,
            api_keys: Vec::new(),
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
        }
    }
}

impl AppState {
    /// Loads the deployments' engines (slow: call it off the async threads) and takes the API
    /// keys (`api_keys`, plus `FERRITE_API_KEYS`). The state is ready to serve; `/ready`
    /// answers 200 until [`AppState::lifecycle`] is told to drain.
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
            lifecycle: Arc::new(Lifecycle::new(Phase::Ready)),
        })
    }

    /// The readiness and drain state the routes follow.
    pub fn lifecycle(&self) -> &Arc<Lifecycle> {
        &self.lifecycle
    }
}

/// The axum router of the whole API (`/v1/...`, `/v1/openai/...`, `/health`, `/metrics`,
/// `/openapi.json`), to serve or to nest in a larger application.
pub fn router(state: AppState) -> axum::Router {
    routes::router(state)
}

/// Binds, logs a structured `listening` line to stderr, loads the models (answering `/health`
/// with 200 and `/ready` and the API with 503 meanwhile), and serves until SIGTERM or ctrl-c;
/// then drains (see [`lifecycle`]) and returns.
pub fn run(config: ServeConfig) -> Result<(), ServerError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("ferrite-http")
        .enable_all()
        .build()
        .map_err(io("starting the async runtime"))?;
    let result = runtime.block_on(serve(config));
    // A model load still running (a signal during startup) is not waited for.
    runtime.shutdown_background();
    result
}

/// [`run`] inside a running tokio runtime (multi-threaded, with I/O and timers enabled).
pub async fn serve(config: ServeConfig) -> Result<(), ServerError> {
    let ServeConfig { host, port, models, engine, api_keys, drain_timeout } = config;
    let started = Instant::now();
    let names: Vec<String> = models.iter().map(|m| m.name.clone()).collect();
    log::event(
        "info",
        "starting",
        &[("version", env!("CARGO_PKG_VERSION").into()), ("pid", std::process::id().into()), ("models", json!(names))],
    );
    let mut signals = shutdown::Signals::new();
    let listener =
        tokio::net::TcpListener::bind((host.as_str(), port)).await.map_err(io(format!("binding {host}:{port}")))?;
    let addr = listener.local_addr().map_err(io("reading the bound address"))?;
    let lifecycle = Arc::new(Lifecycle::new(Phase::Loading));
    let app = Arc::new(OnceLock::<axum::Router>::new());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, outer_router(app.clone(), lifecycle.clone()))
        .with_graceful_shutdown(async move {
            let _ = stopped.await;
        })
        .into_future();
    let mut server = tokio::spawn(server);
    log::event("info", "listening", &[("url", format!("http://{addr}").into())]);

    let load = tokio::task::spawn_blocking(move || AppState::load(models, &engine, &api_keys));
    let state = tokio::select! {
        loaded = load => loaded.map_err(|e| ServerError::Config(format!("loading the models: {e}")))?,
        signal = signals.next() => {
            log::event("info", "stopped", &[("signal", signal.into()), ("while", "loading".into())]);
            return Ok(());
        }
    };
    let mut state = match state {
        Ok(s) => s,
        Err(e) => {
            log::event("error", "load_failed", &[("error", e.to_string().into())]);
            return Err(e);
        }
    };
    state.lifecycle = lifecycle.clone();
    let deployments: Vec<&str> = state.registry.deployments().iter().map(|d| d.id.as_str()).collect();
    log::event(
        "info",
        "ready",
        &[
            ("models", json!(deployments)),
            ("api_keys_required", (!state.keys.is_open()).into()),
            ("load_seconds", log::seconds_since(started)),
        ],
    );
    let _ = app.set(routes::router(state));
    lifecycle.set_ready();

    let signal = tokio::select! {
        signal = signals.next() => signal,
        ended = &mut server => {
            let r = ended.map_err(|e| ServerError::Config(format!("the HTTP server task failed: {e}")))?;
            return r.map_err(io("serving HTTP"));
        }
    };
    lifecycle.start_draining();
    log::event(
        "info",
        "draining",
        &[
            ("signal", signal.into()),
            ("in_flight", lifecycle.in_flight().into()),
            ("drain_timeout_seconds", drain_timeout.as_secs_f64().into()),
        ],
    );
    let drain_started = Instant::now();
    let cut = tokio::select! {
        () = lifecycle.wait_idle() => None,
        () = tokio::time::sleep(drain_timeout) => Some("drain timeout expired"),
        _ = signals.next() => Some("second signal"),
    };
    let cut = cut.map(|reason| {
        let requests = lifecycle.in_flight();
        log::event("warn", "drain_cut", &[("reason", reason.into()), ("in_flight", requests.into())]);
        lifecycle.abort_all();
        (reason, requests)
    });
    if cut.is_some() {
        // Let the error answers reach their clients.
        let _ = tokio::time::timeout(Duration::from_secs(2), lifecycle.wait_idle()).await;
    }
    let _ = stop.send(());
    // Idle keep-alive connections close at once; a client still sending gets a few seconds.
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    log::event(
        "info",
        "stopped",
        &[("clean", cut.is_none().into()), ("drain_seconds", log::seconds_since(drain_started))],
    );
    match cut {
        None => Ok(()),
        Some((reason, requests)) => Err(ServerError::DrainCut { reason: reason.into(), requests }),
    }
}

/// What the listener serves: the application once the models are loaded; before that `/health`
/// (200), and 503 with `Retry-After` for everything else.
fn outer_router(app: Arc<OnceLock<axum::Router>>, lifecycle: Arc<Lifecycle>) -> axum::Router {
    axum::Router::new().fallback(move |req: Request| {
        let (app, lifecycle) = (app.clone(), lifecycle.clone());
        async move {
            use tower::ServiceExt;
            match app.get() {
                Some(router) => router.clone().oneshot(req).await.into_response(),
                None if req.uri().path() == "/health" => "ok".into_response(),
                None => lifecycle::refusal(lifecycle.phase()),
            }
        }
    })
}
