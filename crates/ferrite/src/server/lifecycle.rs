//! Readiness and draining, for load balancers and rolling restarts.
//!
//! A replica is `Loading` from the moment it listens until its models are loaded, then `Ready`,
//! then `Draining` after SIGTERM. `GET /health` (liveness) answers 200 in every phase;
//! `GET /ready` answers 200 only when `Ready`. Outside `Ready`, the API routes answer 503 with
//! an OpenAI error body and `Retry-After`, so a balancer retries them elsewhere.
//!
//! Every API request counts as in flight until its answer is complete (a stream until its
//! last event). Draining waits for that count to reach zero; if the drain is cut short (timeout
//! or a second signal), [`Lifecycle::abort_all`] ends every request still in flight with an
//! OpenAI error: a 503 body for a whole answer, an error event then `[DONE]` for a stream.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::{stream, StreamExt};
use tokio::sync::{watch, Notify};

use crate::ErrorBody;

/// Seconds a client is told to wait (`Retry-After`) before retrying a 503.
pub const RETRY_AFTER_SECS: u32 = 1;

/// Where a replica stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Listening, models still loading.
    Loading,
    /// Serving.
    Ready,
    /// Shutting down: finishing what is in flight, refusing new requests.
    Draining,
}

/// The replica's phase and its requests in flight.
#[derive(Debug)]
pub struct Lifecycle {
    phase: AtomicU8,
    in_flight: AtomicUsize,
    idle: Notify,
    abort: watch::Sender<bool>,
}

impl Lifecycle {
    /// A lifecycle in `phase`.
    pub fn new(phase: Phase) -> Self {
        Lifecycle {
            phase: AtomicU8::new(phase as u8),
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
            abort: watch::Sender::new(false),
        }
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::SeqCst) {
            0 => Phase::Loading,
            1 => Phase::Ready,
            _ => Phase::Draining,
        }
    }

    /// Models loaded: start serving (unless already draining).
    pub fn set_ready(&self) {
        let _ =
            self.phase.compare_exchange(Phase::Loading as u8, Phase::Ready as u8, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// Turns unready and refuses new API requests from now on.
    pub fn start_draining(&self) {
        self.phase.store(Phase::Draining as u8, Ordering::SeqCst);
    }

    /// API requests whose answer is not complete yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Resolves once no API request is in flight.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.in_flight() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Ends every request in flight with an OpenAI error (see the module docs).
    pub fn abort_all(&self) {
        self.abort.send_replace(true);
    }

    fn enter(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self.clone())
    }
}

/// One request in flight; dropping it ends it.
struct InFlight(Arc<Lifecycle>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Resolves when `rx` reads true; never if its sender is gone.
async fn aborted(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|a| *a).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// 503 with `Retry-After` and an OpenAI error body.
fn unavailable(message: &str, code: &'static str) -> Response {
    let body = ErrorBody::new("server_error", message).code(code);
    let mut resp = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    resp
}

/// The answer of an API route outside `Ready`.
pub fn refusal(phase: Phase) -> Response {
    match phase {
        Phase::Loading => unavailable("The server is starting: its models are still loading. Please retry.", "loading"),
        _ => unavailable("The server is shutting down and takes no new requests. Please retry.", "shutting_down"),
    }
}

const CUT_MESSAGE: &str = "The server is shutting down and could not finish this request in time. Please retry.";

/// The events that end a stream cut by [`Lifecycle::abort_all`].
fn cut_stream_events() -> Bytes {
    let body = ErrorBody::new("server_error", CUT_MESSAGE).code("shutting_down");
    let json = serde_json::to_string(&body).unwrap_or_default();
    Bytes::from(format!("data: {json}\n\ndata: [DONE]\n\n"))
}

/// Middleware of the API routes: refuses requests outside `Ready`, counts the others in flight
/// until their answer is complete, and cuts them short on [`Lifecycle::abort_all`].
pub async fn gate(State(lc): State<Arc<Lifecycle>>, req: Request, next: Next) -> Response {
    let phase = lc.phase();
    if phase != Phase::Ready {
        return refusal(phase);
    }
    let guard = lc.enter();
    let mut abort = lc.abort.subscribe();
    let resp = tokio::select! {
        resp = next.run(req) => resp,
        () = aborted(&mut abort) => return unavailable(CUT_MESSAGE, "shutting_down"),
    };
    let streaming =
        resp.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if !streaming {
        return resp;
    }
    // The stream stays in flight until its body ends; a cut replaces its rest with an error
    // event and `[DONE]` (dropping the engine's stream cancels the generation).
    let (parts, body) = resp.into_parts();
    let state = (Some(body.into_data_stream()), abort, guard);
    let body = stream::unfold(state, |(body, mut abort, guard)| async move {
        let mut body = body?;
        tokio::select! {
            biased;
            item = body.next() => item.map(|chunk| (chunk, (Some(body), abort, guard))),
            () = aborted(&mut abort) => Some((Ok(cut_stream_events()), (None, abort, guard))),
        }
    });
    Response::from_parts(parts, Body::from_stream(body))
}

/// `GET /ready`: 200 when serving, 503 while loading or draining.
pub async fn ready(State(lc): State<Arc<Lifecycle>>) -> Response {
    match lc.phase() {
        Phase::Ready => "ready".into_response(),
        phase => refusal(phase),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use axum::routing::post;
    use axum::{middleware, Router};

    use super::*;

    fn app(lc: &Arc<Lifecycle>) -> Router {
        let slow = || async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            "done"
        };
        let stream = || async {
            let events = stream::iter([Ok::<_, std::io::Error>(Bytes::from("data: 1\n\n"))]).chain(stream::pending());
            ([(header::CONTENT_TYPE, "text/event-stream")], Body::from_stream(events))
        };
        Router::new()
            .route("/fast", post(|| async { "fast" }))
            .route("/slow", post(slow))
            .route("/stream", post(stream))
            .layer(middleware::from_fn_with_state(lc.clone(), gate))
    }

    async fn call(app: &Router, path: &str) -> Response {
        use tower::ServiceExt;
        app.clone().oneshot(Request::post(path).body(Body::empty()).unwrap()).await.unwrap()
    }

    async fn text(resp: Response) -> String {
        String::from_utf8(axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn refuses_while_loading_and_draining_with_retry_after() {
        let lc = Arc::new(Lifecycle::new(Phase::Loading));
        let app = app(&lc);
        for (expect, code) in [(Phase::Loading, "loading"), (Phase::Draining, "shutting_down")] {
            if expect == Phase::Draining {
                lc.set_ready();
                assert_eq!(call(&app, "/fast").await.status(), StatusCode::OK);
                lc.start_draining();
            }
            assert_eq!(lc.phase(), expect);
            let resp = call(&app, "/fast").await;
            assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
            let body: serde_json::Value = serde_json::from_str(&text(resp).await).unwrap();
            assert_eq!(body["error"]["type"], "server_error");
            assert_eq!(body["error"]["code"], code);
        }
        // Draining never goes back to ready.
        lc.set_ready();
        assert_eq!(lc.phase(), Phase::Draining);
    }

    #[tokio::test]
    async fn streams_count_until_their_body_ends_and_abort_answers_everyone() {
        let lc = Arc::new(Lifecycle::new(Phase::Ready));
        let app = app(&lc);
        let stream = call(&app, "/stream").await;
        assert_eq!(lc.in_flight(), 1, "the stream's body is still open");
        let slow = tokio::spawn({
            let app = app.clone();
            async move { call(&app, "/slow").await }
        });
        while lc.in_flight() < 2 {
            tokio::task::yield_now().await;
        }
        lc.start_draining();
        assert!(tokio::time::timeout(Duration::from_millis(50), lc.wait_idle()).await.is_err());
        lc.abort_all();
        let slow = slow.await.unwrap();
        assert_eq!(slow.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(text(slow).await.contains("shutting_down"));
        let body = text(stream).await;
        assert!(body.starts_with("data: 1\n\ndata: {\"error\":"), "{body}");
        assert!(body.ends_with("data: [DONE]\n\n"), "{body}");
        tokio::time::timeout(Duration::from_secs(1), lc.wait_idle()).await.unwrap();
        assert_eq!(lc.in_flight(), 0);
    }
}
