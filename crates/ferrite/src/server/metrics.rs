//! `GET /metrics`: Prometheus text format, hand-written (a few counters and histograms do not
//! need a metrics crate).
//!
//! HTTP series come from a middleware that sees every request; engine series (queue depth,
//! running sequences, KV blocks, tokens; image jobs waiting and running) are read from each
//! engine's stats at scrape time.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use super::registry::ModelRegistry;
use super::AppState;
use crate::{EngineStats, Histogram, RequestLatency};

/// Upper bounds (seconds) of the HTTP latency buckets.
const LATENCY_BUCKETS: &[f64] = &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

/// Writes `h` as the series `name` with one label.
fn render_histogram(out: &mut String, h: &Histogram, name: &str, label: &str, value: &str) {
    let l = format!("{label}=\"{}\"", escape(value));
    for (le, c) in h.buckets() {
        let _ = writeln!(out, "{name}_bucket{{{l},le=\"{le}\"}} {c}");
    }
    let _ = writeln!(out, "{name}_bucket{{{l},le=\"+Inf\"}} {}", h.count());
    let _ = writeln!(out, "{name}_sum{{{l}}} {}", h.sum());
    let _ = writeln!(out, "{name}_count{{{l}}} {}", h.count());
}

/// Escapes a label value.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The server's HTTP counters.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    in_flight: AtomicI64,
}

impl Metrics {
    fn finish(&self, route: &str, status: u16, started: Instant) {
        let secs = started.elapsed().as_secs_f64();
        let mut latency = self.latency.lock().unwrap_or_else(PoisonError::into_inner);
        latency.entry(route.to_string()).or_insert_with(|| Histogram::new(LATENCY_BUCKETS)).observe(secs);
        drop(latency);
        let mut requests = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
        *requests.entry((route.to_string(), status)).or_default() += 1;
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// The whole exposition: HTTP series, then each engine's.
    pub fn render(&self, registry: &ModelRegistry) -> String {
        let mut out = String::new();
        out.push_str("# HELP ferrite_http_requests_total HTTP requests answered, by route and status.\n");
        out.push_str("# TYPE ferrite_http_requests_total counter\n");
        for ((route, status), n) in self.requests.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            let _ = writeln!(out, "ferrite_http_requests_total{{route=\"{}\",status=\"{status}\"}} {n}", escape(route));
        }
        out.push_str("# HELP ferrite_http_requests_in_flight HTTP requests being answered (streams included).\n");
        out.push_str("# TYPE ferrite_http_requests_in_flight gauge\n");
        let _ = writeln!(out, "ferrite_http_requests_in_flight {}", self.in_flight.load(Ordering::Relaxed));
        let name = "ferrite_http_request_duration_seconds";
        let _ = writeln!(out, "# HELP {name} Time to answer a request (to its last byte).\n# TYPE {name} histogram");
        for (route, h) in self.latency.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            render_histogram(&mut out, h, name, "route", route);
        }
        render_engines(&mut out, registry);
        render_image_engines(&mut out, registry);
        out
    }
}

/// The engine series, once per engine (deployments of one file share it), named as the
/// Gateway API Inference Extension's model server protocol asks (vLLM's names under our
/// prefix): queue depth, running requests and KV-cache use as gauges, the KV block size and
/// count as labels of an info gauge, token counters, and request latency histograms.
fn render_engines(out: &mut String, registry: &ModelRegistry) {
    let mut seen: Vec<&str> = Vec::new();
    let mut rows = Vec::new();
    for d in registry.deployments() {
        if seen.contains(&d.spec.path.as_str()) || d.engine.is_embedding_model() || d.engine.is_image_model() {
            continue;
        }
        seen.push(&d.spec.path);
        rows.push((escape(&d.id), d.engine.stats(), d.engine.latency()));
    }
    let header = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    type Field = fn(&EngineStats) -> f64;
    let series: [(&str, &str, &str, Field); 6] = [
        ("ferrite:num_requests_waiting", "gauge", "Requests waiting for admission.", |s| s.waiting as f64),
        ("ferrite:num_requests_running", "gauge", "Requests being generated (one per choice).", |s| s.running as f64),
        ("ferrite:kv_cache_usage_perc", "gauge", "Fraction of the KV-cache blocks in use (0 to 1).", |s| {
            if s.kv_blocks_total == 0 {
                0.0
            } else {
                s.kv_blocks_used as f64 / s.kv_blocks_total as f64
            }
        }),
        ("ferrite:prompt_tokens_total", "counter", "Prompt tokens admitted.", |s| s.prompt_tokens as f64),
        ("ferrite:generation_tokens_total", "counter", "Tokens generated.", |s| s.generated_tokens as f64),
        ("ferrite:prefix_cache_hit_tokens_total", "counter", "Prompt tokens served from the prefix cache.", |s| {
            s.cached_prompt_tokens as f64
        }),
    ];
    for (name, kind, help, field) in series {
        header(out, name, kind, help);
        for (model, stats, _) in &rows {
            let _ = writeln!(out, "{name}{{model_name=\"{model}\"}} {}", field(stats));
        }
    }
    let name = "ferrite:cache_config_info";
    header(out, name, "gauge", "KV-cache layout: tokens per block and blocks in all (value 1).");
    for (model, stats, _) in &rows {
        let (size, blocks) = (stats.kv_block_size, stats.kv_blocks_total);
        let _ = writeln!(out, "{name}{{model_name=\"{model}\",block_size=\"{size}\",num_gpu_blocks=\"{blocks}\"}} 1");
    }
    type Pick = fn(&RequestLatency) -> &Histogram;
    let histograms: [(&str, &str, Pick); 3] = [
        ("ferrite:time_to_first_token_seconds", "Arrival to first generated token.", |l| &l.time_to_first_token),
        ("ferrite:time_per_output_token_seconds", "Mean time between output tokens, per request.", |l| {
            &l.time_per_output_token
        }),
        ("ferrite:e2e_request_latency_seconds", "Arrival to last token.", |l| &l.e2e),
    ];
    for (name, help, pick) in histograms {
        header(out, name, "histogram", help);
        for (model, _, latency) in &rows {
            render_histogram(out, pick(latency), name, "model_name", model);
        }
    }
}

/// The image workers' series, once per image engine: jobs waiting for a worker, jobs running,
/// denoising steps done.
fn render_image_engines(out: &mut String, registry: &ModelRegistry) {
    let mut seen: Vec<&str> = Vec::new();
    let mut rows = Vec::new();
    for d in registry.deployments() {
        if seen.contains(&d.spec.path.as_str()) || !d.engine.is_image_model() {
            continue;
        }
        seen.push(&d.spec.path);
        rows.push((escape(&d.id), d.engine.stats()));
    }
    type Field = fn(&EngineStats) -> u64;
    let series: [(&str, &str, &str, Field); 3] = [
        ("ferrite:image_requests_waiting", "gauge", "Image jobs waiting for a worker.", |s| s.waiting as u64),
        ("ferrite:image_requests_running", "gauge", "Image jobs being generated.", |s| s.running as u64),
        ("ferrite:image_denoising_steps_total", "counter", "Denoising steps done.", |s| s.steps),
    ];
    for (name, kind, help, field) in series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (model, stats) in &rows {
            let _ = writeln!(out, "{name}{{model_name=\"{model}\"}} {}", field(stats));
        }
    }
}

/// Records a request when its response is complete, which for a stream is when its body ends
/// or the client goes away.
struct Finish {
    metrics: Arc<Metrics>,
    route: String,
    status: u16,
    started: Instant,
}

impl Drop for Finish {
    fn drop(&mut self) {
        self.metrics.finish(&self.route, self.status, self.started);
    }
}

/// Middleware counting every request by route (the matched pattern) and status.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |m| m.as_str()).to_string();
    state.metrics.in_flight.fetch_add(1, Ordering::Relaxed);
    let resp = next.run(req).await;
    let finish = Finish { metrics: state.metrics.clone(), route, status: resp.status().as_u16(), started };
    let streaming =
        resp.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if !streaming {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let body = body.into_data_stream().map(move |chunk| {
        let _ = &finish;
        chunk
    });
    Response::from_parts(parts, Body::from_stream(body))
}

/// `GET /metrics`.
pub async fn scrape(State(state): State<AppState>) -> impl IntoResponse {
    let text = state.metrics.render(&state.registry);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text)
}
