//! Lifecycle: readiness while loading and draining, SIGTERM lets the requests in flight finish
//! before the server exits 0, a cut drain (timeout, second signal) answers them with OpenAI
//! errors, a client that hangs up cancels its generation, and the gateway metrics follow load.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

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
    assert_eq!(s.get("/ready"), (200, "ready".to_string()));
    let conn = raw(&s.addr, &raw_post("/v1/completions", &long_stream(48), Some("application/json")));
    let mut reader = BufReader::new(conn);
    first_event(&mut reader);
    s.terminate();
    // Unready at once; a new request is refused with a retryable 503, liveness still answers.
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.get("/ready").0 != 503 {
        assert!(Instant::now() < deadline, "/ready still 200 after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, body) = s.post("/v1/completions", &json!({"model": "smol", "prompt": "Hi", "max_tokens": 2}), None);
    assert_eq!(status, 503, "{body}");
    common::assert_error(&body, "server_error", None, Some("shutting_down"));
    let refused = common::agent().get(s.url("/v1/models")).call().unwrap();
    assert_eq!((refused.status().as_u16(), refused.headers()["retry-after"].to_str().unwrap()), (503, "1"));
    assert_eq!(s.get("/health").0, 200);
    // The stream in flight runs to its end.
    let rest = sse_payloads(reader);
    assert_eq!(rest.last().map(String::as_str), Some("[DONE]"), "the stream was cut: {rest:?}");
    let finish = rest.iter().rev().nth(1).map(|d| serde_json::from_str::<Value>(d).unwrap()).unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "length", "{finish}");
    let status = s.wait_exit(Duration::from_secs(60)).expect("the server did not exit after SIGTERM");
    assert!(status.success(), "exit status {status:?}");
    let events = structured_events(&s);
    for want in ["draining", "stopped"] {
        assert!(events.iter().any(|e| e["event"] == want), "no {want:?} line in {events:?}");
    }
}

/// The structured log lines the server printed after its listening line (it has exited).
fn structured_events(s: &Server) -> Vec<Value> {
    s.log.try_iter().filter_map(|l| serde_json::from_str::<Value>(&l).ok()).filter(|v| v["ts"].is_string()).collect()
}

/// A long whole (non-streamed) completion, sent on its own thread: (status, body).
fn long_whole(s: &Server) -> std::thread::JoinHandle<(u16, Value)> {
    let url = s.url("/v1/completions");
    std::thread::spawn(move || {
        let body = json!({"model": "smol", "prompt": "Once", "max_tokens": 2000, "ignore_eos": true});
        let mut resp =
            common::agent().post(&url).header("content-type", "application/json").send(body.to_string()).unwrap();
        let status = resp.status().as_u16();
        (status, serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap())
    })
}

/// Starts a long stream and a long whole request, sends SIGTERM, then `cut` (a second signal or
/// nothing, the drain timeout being short): both get OpenAI errors, the process exits 1.
fn cut_drain(extra: &[&str], second_signal: bool) {
    let Some(mut s) = Server::smollm2("smol", extra) else { return };
    let conn = raw(&s.addr, &raw_post("/v1/completions", &long_stream(2000), Some("application/json")));
    let mut reader = BufReader::new(conn);
    first_event(&mut reader);
    let whole = long_whole(&s);
    wait_for_metric(&s, "ferrite:num_requests_running{model_name=\"smol\"} 2", Duration::from_secs(30)).unwrap();
    let signalled = Instant::now();
    s.terminate();
    if second_signal {
        while s.get("/ready").0 != 503 {
            std::thread::sleep(Duration::from_millis(20));
        }
        s.terminate();
    }
    let rest = sse_payloads(reader);
    assert!(signalled.elapsed() < Duration::from_secs(20), "the cut took {:?}", signalled.elapsed());
    assert_eq!(rest.last().map(String::as_str), Some("[DONE]"), "{rest:?}");
    let error: Value = serde_json::from_str(&rest[rest.len() - 2]).unwrap();
    assert_eq!((&error["error"]["type"], &error["error"]["code"]), (&json!("server_error"), &json!("shutting_down")));
    let (status, body) = whole.join().unwrap();
    assert_eq!(status, 503, "{body}");
    common::assert_error(&body, "server_error", None, Some("shutting_down"));
    let status = s.wait_exit(Duration::from_secs(30)).expect("the server did not exit");
    assert_eq!(status.code(), Some(1), "a cut drain is not a clean exit");
    let events = structured_events(&s);
    let cut = events.iter().find(|e| e["event"] == "drain_cut").unwrap_or_else(|| panic!("{events:?}"));
    assert_eq!(cut["in_flight"], 2, "{cut}");
}

#[test]
fn an_expired_drain_timeout_answers_in_flight_requests_with_errors() {
    cut_drain(&["--drain-timeout", "1"], false);
}

#[test]
fn a_second_sigterm_answers_in_flight_requests_with_errors() {
    cut_drain(&["--drain-timeout", "600"], true);
}

#[test]
fn ready_only_once_loaded() {
    let Some(model) = common::smollm2() else { return };
    let mut s = Server::spawn(&["--model", model.to_str().unwrap(), "--name", "smol"], &[]);
    // From the listening line on: /health answers 200, /ready 503 (loading) until it answers 200
    // for good; API calls before that are refused as retryable.
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (ready, body) = s.get("/ready");
        assert_eq!(s.get("/health").0, 200);
        seen.push(ready);
        if ready == 200 {
            break;
        }
        assert_eq!(ready, 503, "{body}");
        assert!(body.contains("\"loading\""), "{body}");
        assert!(Instant::now() < deadline, "never ready");
    }
    for _ in 0..5 {
        assert_eq!(s.get("/ready").0, 200, "readiness went back after {seen:?}");
    }
    let (status, body) = s.post("/v1/completions", &json!({"model": "smol", "prompt": "Hi", "max_tokens": 2}), None);
    assert_eq!(status, 200, "{body}");
    eprintln!("/ready answered 503 {} time(s) before the model was loaded", seen.len() - 1);
    s.wait_ready(Instant::now()).unwrap();
}

/// Metrics follow a burst: with room for 2 sequences, 6 long streams show 2 running and 4
/// waiting with KV blocks in use, and everything returns to 0 when the clients leave.
#[test]
fn metrics_move_with_a_burst() {
    let Some(s) = Server::smollm2("smol", &["--max-num-seqs", "2"]) else { return };
    let conns: Vec<_> = (0..6)
        .map(|_| raw(&s.addr, &raw_post("/v1/completions", &long_stream(2000), Some("application/json"))))
        .collect();
    let text =
        wait_for_metric(&s, "ferrite:num_requests_waiting{model_name=\"smol\"} 4", Duration::from_secs(30)).unwrap();
    assert!(text.lines().any(|l| l == "ferrite:num_requests_running{model_name=\"smol\"} 2"), "{text}");
    let usage: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("ferrite:kv_cache_usage_perc{model_name=\"smol\"} "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(usage > 0.0 && usage <= 1.0, "kv usage {usage}");
    drop(conns);
    wait_for_metric(&s, "ferrite:num_requests_waiting{model_name=\"smol\"} 0", Duration::from_secs(30)).unwrap();
    let text =
        wait_for_metric(&s, "ferrite:num_requests_running{model_name=\"smol\"} 0", Duration::from_secs(30)).unwrap();
    assert!(text.lines().any(|l| l == "ferrite:kv_cache_usage_perc{model_name=\"smol\"} 0"), "{text}");
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
