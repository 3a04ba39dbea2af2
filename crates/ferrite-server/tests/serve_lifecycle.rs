//! Streams end cleanly: a client that hangs up cancels its generation, and SIGTERM lets the
//! streams in flight finish before the server exits 0.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::time::Duration;

use common::{raw, raw_post, sse_payloads, wait_for_metric, Server};
use serde_json::{json, Value};

/// A long greedy stream (end-of-sequence ignored).
fn long_stream(max_tokens: u32) -> String {
    json!({"model": "smol", "prompt": "Once upon a time", "max_tokens": max_tokens, "temperature": 0,
           "ignore_eos": true, "stream": true})
    .to_string()
}

/// Reads the response head and the first `data:` event of a raw streaming response.
fn first_event(reader: &mut impl BufRead) -> String {
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "stream ended before its first event:\n{seen}");
        if let Some(data) = line.strip_prefix("data: ") {
            return data.trim_end().to_string();
        }
        seen.push_str(&line);
    }
}

#[test]
fn disconnect_mid_stream_cancels_the_generation() {
    let Some(s) = Server::smollm2("smol", &[]) else { return };
    let conn = raw(&s.addr, &raw_post("/v1/completions", &long_stream(2000), Some("application/json")));
    let mut reader = BufReader::new(conn);
    let first: Value = serde_json::from_str(&first_event(&mut reader)).unwrap();
    assert_eq!(first["object"], "text_completion");
    wait_for_metric(&s, "ferrite:num_requests_running{model_name=\"smol\"} 1", Duration::from_secs(30)).unwrap();
    drop(reader);
    let metrics = wait_for_metric(&s, "ferrite:num_requests_running{model_name=\"smol\"} 0", Duration::from_secs(30));
    assert!(metrics.is_ok(), "the generation kept running after the client left:\n{}", metrics.unwrap_err());
    wait_for_metric(&s, "ferrite_http_requests_in_flight 1", Duration::from_secs(10)).unwrap();
    // The server still answers.
    let (status, body) = s.post("/v1/completions", &json!({"model": "smol", "prompt": "Hi", "max_tokens": 2}), None);
    assert_eq!(status, 200, "{body}");
}

#[test]
fn sigterm_drains_streams_then_exits_0() {
    let Some(mut s) = Server::smollm2("smol", &[]) else { return };
    let conn = raw(&s.addr, &raw_post("/v1/completions", &long_stream(48), Some("application/json")));
    let mut reader = BufReader::new(conn);
    first_event(&mut reader);
    s.terminate();
    let rest = sse_payloads(reader);
    assert_eq!(rest.last().map(String::as_str), Some("[DONE]"), "the stream was cut: {rest:?}");
    let finish = rest.iter().rev().nth(1).map(|d| serde_json::from_str::<Value>(d).unwrap()).unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "length", "{finish}");
    let status = s.wait_exit(Duration::from_secs(60)).expect("the server did not exit after SIGTERM");
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn a_full_queue_answers_503_overloaded() {
    let Some(s) = Server::smollm2("smol", &["--max-num-seqs", "1", "--max-queue", "1"]) else { return };
    let running = raw(&s.addr, &raw_post("/v1/completions", &long_stream(2000), Some("application/json")));
    let mut running = BufReader::new(running);
    first_event(&mut running);
    let waiting = raw(&s.addr, &raw_post("/v1/completions", &long_stream(2000), Some("application/json")));
    wait_for_metric(&s, "ferrite:num_requests_waiting{model_name=\"smol\"} 1", Duration::from_secs(30)).unwrap();
    let (status, body) = s.post("/v1/completions", &json!({"model": "smol", "prompt": "Hi", "max_tokens": 2}), None);
    assert_eq!(status, 503, "{body}");
    common::assert_error(&body, "server_error", None, Some("overloaded"));
    drop((running, waiting));
    wait_for_metric(&s, "ferrite:num_requests_running{model_name=\"smol\"} 0", Duration::from_secs(30)).unwrap();
    wait_for_metric(&s, "ferrite:num_requests_waiting{model_name=\"smol\"} 0", Duration::from_secs(30)).unwrap();
}
