//! `GET /metrics`: Prometheus text format, hand-written (a few counters and histograms do not
//! need a metrics crate).
//!
//! HTTP series come from a middleware that sees every request; engine series (queue depth,
//! running sequences, KV blocks, tokens) are read from each engine's stats at scrape time.

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

/// Upper bounds (seconds) of the latency buckets.
const LATENCY_BUCKETS: &[f64] = &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

/// A cumulative histogram in Prometheus' shape.
#[derive(Debug, Clone, Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; LATENCY_BUCKETS.len()];
        }
        for (c, le) in self.counts.iter_mut().zip(LATENCY_BUCKETS) {
            if secs <= *le {
                *c += 1;
            }
        }
        self.sum += secs;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, label: &str, value: &str) {
        let l = format!("{label}=\"{}\"", escape(value));
        for (c, le) in self.counts.iter().zip(LATENCY_BUCKETS) {
            let _ = writeln!(out, "{name}_bucket{{{l},le=\"{le}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{{l},le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{l}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{l}}} {}", self.count);
    }
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
    first_token: Mutex<BTreeMap<String, Histogram>>,
    in_flight: AtomicI64,
}

impl Metrics {
    fn finish(&self, route: &str, status: u16, started: Instant) {
        let secs = started.elapsed().as_secs_f64();
        let mut latency = self.latency.lock().unwrap_or_else(PoisonError::into_inner);
        latency.entry(route.to_string()).or_default().observe(secs);
        drop(latency);
        let mut requests = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
        *requests.entry((route.to_string(), status)).or_default() += 1;
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// Records the time from `started` to a stream's first chunk for `model`.
    pub fn first_token(&self, model: &str, started: Instant) {
        let mut h = self.first_token.lock().unwrap_or_else(PoisonError::into_inner);
        h.entry(model.to_string()).or_default().observe(started.elapsed().as_secs_f64());
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
        let histograms = [
            (
                "ferrite_http_request_duration_seconds",
                "Time to answer a request (to its last byte).",
                "route",
                &self.latency,
            ),
            (
                "ferrite_time_to_first_token_seconds",
                "Time from a streamed request to its first chunk.",
                "model",
                &self.first_token,
            ),
        ];
        for (name, help, label, map) in histograms {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            for (value, h) in map.lock().unwrap_or_else(PoisonError::into_inner).iter() {
                h.render(&mut out, name, label, value);
            }
        }
        render_engines(&mut out, registry);
        out
    }
}

/// Engine gauges and counters, once per engine (deployments of one file share it).
fn render_engines(out: &mut String, registry: &ModelRegistry) {
    let mut seen: Vec<&str> = Vec::new();
    let mut rows = Vec::new();
    for d in registry.deployments() {
        if seen.contains(&d.spec.path.as_str()) {
            continue;
        }
        seen.push(&d.spec.path);
        rows.push((escape(&d.id), d.engine.stats()));
    }
    type Field = fn(&crate::EngineStats) -> u64;
    let series: [(&str, &str, &str, Field); 7] = [
        ("ferrite_requests_waiting", "gauge", "Requests queued for admission.", |s| s.waiting as u64),
        ("ferrite_requests_running", "gauge", "Sequences being generated.", |s| s.running as u64),
        ("ferrite_kv_blocks_used", "gauge", "KV-cache blocks in use.", |s| s.kv_blocks_used as u64),
        ("ferrite_kv_blocks_total", "gauge", "KV-cache blocks in all.", |s| s.kv_blocks_total as u64),
        ("ferrite_prompt_tokens_total", "counter", "Prompt tokens admitted.", |s| s.prompt_tokens),
        ("ferrite_generation_tokens_total", "counter", "Tokens generated.", |s| s.generated_tokens),
        ("ferrite_cached_prompt_tokens_total", "counter", "Prompt tokens served from the prefix cache.", |s| {
            s.cached_prompt_tokens
        }),
    ];
    for (name, kind, help, field) in series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (model, stats) in &rows {
            let _ = writeln!(out, "{name}{{model=\"{model}\"}} {}", field(stats));
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
