//! Server-sent events: each chunk as `data: {json}\n\n`, a mid-stream error as
//! `data: {"error":{...}}\n\n`, then `data: [DONE]\n\n`; keep-alive comments while the engine
//! is quiet.
//!
//! The response body owns the engine's stream, so a client that disconnects drops it, which
//! cancels the generation and frees its KV blocks.

use std::convert::Infallible;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{stream, Stream, StreamExt};
use serde::Serialize;

use super::errors::ApiError;

/// Where a stream stands.
enum Phase<S> {
    /// Forwarding chunks.
    Chunks(S),
    /// The engine's stream ended or failed: `[DONE]` is next.
    Done,
    /// `[DONE]` was sent.
    Closed,
}

/// The SSE response for a stream of chunks.
pub fn response<S, T>(chunks: S) -> Response
where
    S: Stream<Item = Result<T, crate::Error>> + Send + Unpin + 'static,
    T: Serialize,
{
    let events = stream::unfold(Phase::Chunks(chunks), move |phase| {
        async move {
            match phase {
                Phase::Chunks(mut s) => match s.next().await {
                    Some(Ok(chunk)) => Some((json_event(&chunk), Phase::Chunks(s))),
                    // Dropping `s` here ends the generation before the client hears of it.
                    Some(Err(e)) => Some((json_event(&ApiError::from(e).body), Phase::Done)),
                    None => Some((done(), Phase::Closed)),
                },
                Phase::Done => Some((done(), Phase::Closed)),
                Phase::Closed => None,
            }
        }
    });
    Sse::new(events.map(Ok::<_, Infallible>)).keep_alive(KeepAlive::default()).into_response()
}

fn json_event<T: Serialize>(value: &T) -> Event {
    match serde_json::to_string(value) {
        Ok(json) => Event::default().data(json),
        Err(e) => Event::default().data(format!(
            r#"{{"error":{{"message":"serialising a chunk: {}","type":"server_error","param":null,"code":null}}}}"#,
            e.to_string().replace('"', "'")
        )),
    }
}

fn done() -> Event {
    Event::default().data("[DONE]")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::{ChatCompletionChunk, ChatCompletionRequest, ChatMessage};

    async fn body_of(items: Vec<Result<ChatCompletionChunk, crate::Error>>) -> String {
        let resp = response(stream::iter(items));
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn chunks_then_done() {
        let chunk = ChatCompletionChunk::new("chatcmpl-1", 7, "m", vec![]);
        let body = body_of(vec![Ok(chunk.clone()), Ok(chunk)]).await;
        let event =
            r#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":7,"model":"m","choices":[]}"#;
        assert_eq!(body, format!("{event}\n\n{event}\n\ndata: [DONE]\n\n"));
    }

    #[tokio::test]
    async fn an_error_ends_the_stream_with_an_error_event() {
        let chunk = ChatCompletionChunk::new("chatcmpl-1", 7, "m", vec![]);
        let invalid = ChatCompletionRequest::new("m", [ChatMessage::user("x")]).n(0).validate().unwrap_err();
        let items = vec![Ok(chunk.clone()), Err(crate::Error::Internal("boom".into())), Ok(chunk)];
        let body = body_of(items).await;
        let events: Vec<&str> = body.split("\n\n").filter(|e| !e.is_empty()).collect();
        assert_eq!(events.len(), 3, "{body}");
        let error: serde_json::Value = serde_json::from_str(events[1].strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(error["error"]["type"], "server_error");
        assert!(error["error"]["message"].as_str().unwrap().contains("boom"));
        assert_eq!(events[2], "data: [DONE]");
        let body = body_of(vec![Err(crate::Error::from(invalid))]).await;
        assert!(body.starts_with(r#"data: {"error":{"message":"n must be"#), "{body}");
    }
}
