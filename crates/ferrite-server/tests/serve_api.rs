//! `ferrite serve` answers the OpenAI routes as OpenAI does: models, chat (whole and streamed),
//! completions with echo and logprobs, and metrics.

#![allow(clippy::unwrap_used)]

mod common;

use common::{wait_for_metric, Server};
use ferrite::{ChatCompletionChunk, ChatCompletionResponse, CompletionResponse, FinishReason};
use serde_json::{json, Value};
use std::time::Duration;

#[test]
fn health_models_and_openapi() {
    let Some(s) = Server::smollm2("smol", &[]) else { return };
    assert_eq!(s.get("/health"), (200, "ok".to_string()));
    for prefix in ["/v1", "/v1/openai"] {
        let (status, list) = s.get_json(&format!("{prefix}/models"));
        assert_eq!(status, 200);
        assert_eq!(list["object"], "list");
        assert_eq!(list["data"][0]["id"], "smol");
        assert_eq!(list["data"][0]["object"], "model");
        assert_eq!(list["data"][0]["owned_by"], "ferrite");
        assert!(list["data"][0]["created"].as_u64().unwrap() > 1_700_000_000);
        let (status, one) = s.get_json(&format!("{prefix}/models/smol"));
        assert_eq!((status, &one["id"]), (200, &json!("smol")));
    }
    let (status, err) = s.get_json("/v1/models/nope");
    assert_eq!(status, 404);
    common::assert_error(&err, "invalid_request_error", Some("model"), Some("model_not_found"));
    let (status, doc) = s.get_json("/openapi.json");
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
}

#[test]
fn chat_whole_response() {
    let Some(s) = Server::smollm2("smol", &[]) else { return };
    let req = json!({"model": "smol", "messages": [{"role": "user", "content": "What is the capital of France?"}],
                     "max_tokens": 8, "temperature": 0});
    let (status, body) = s.post("/v1/chat/completions", &req, None);
    assert_eq!(status, 200, "{body}");
    let resp: ChatCompletionResponse = serde_json::from_value(body.clone()).unwrap();
    assert!(resp.id.starts_with("chatcmpl-"), "{}", resp.id);
    assert_eq!((resp.object.as_str(), resp.model.as_str()), ("chat.completion", "smol"));
    assert_eq!(resp.choices.len(), 1);
    let choice = &resp.choices[0];
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert!(choice.message.content.as_deref().is_some_and(|c| !c.is_empty()), "{body}");
    assert!(matches!(choice.finish_reason, Some(FinishReason::Stop | FinishReason::Length)));
    assert!(body["choices"][0].get("logprobs").is_some_and(Value::is_null), "logprobs must be null: {body}");
    let u = resp.usage;
    assert!(u.prompt_tokens > 5 && u.completion_tokens >= 1 && u.completion_tokens <= 8, "{u:?}");
    assert_eq!(u.total_tokens, u.prompt_tokens + u.completion_tokens);
    // The same request through the /v1/openai prefix.
    let (status, again) = s.post("/v1/openai/chat/completions", &req, None);
    assert_eq!(status, 200);
    assert_eq!(again["choices"][0]["message"]["content"], body["choices"][0]["message"]["content"], "greedy differs");
}

#[test]
fn chat_streamed_as_server_sent_events() {
    let Some(s) = Server::smollm2("smol", &[]) else { return };
    let req = json!({"model": "smol", "messages": [{"role": "user", "content": "Say hello."}],
                     "max_tokens": 12, "temperature": 0, "stream": true, "stream_options": {"include_usage": true}});
    let (status, ctype, data) = s.post_stream("/v1/chat/completions", &req);
    assert_eq!(status, 200);
    assert!(ctype.starts_with("text/event-stream"), "{ctype}");
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{data:?}");
    let chunks: Vec<ChatCompletionChunk> =
        data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("{e}: {d}"))).collect();
    assert!(chunks.len() >= 3, "{data:?}");
    let id = &chunks[0].id;
    for c in &chunks {
        assert_eq!((&c.id, c.object.as_str(), c.model.as_str()), (id, "chat.completion.chunk", "smol"));
    }
    let finish: Vec<_> = chunks.iter().filter(|c| c.choices.iter().any(|ch| ch.finish_reason.is_some())).collect();
    assert_eq!(finish.len(), 1, "one chunk finishes the choice");
    let usage = finish[0].usage.expect("the finishing chunk carries usage");
    let last = chunks.last().unwrap();
    assert!(last.choices.is_empty(), "include_usage: last chunk {last:?}");
    let total = last.usage.expect("include_usage: the last chunk carries usage");
    assert_eq!((total.prompt_tokens, total.completion_tokens), (usage.prompt_tokens, usage.completion_tokens));
    let text: String = chunks.iter().flat_map(|c| &c.choices).filter_map(|ch| ch.delta.content.clone()).collect();
    assert!(!text.is_empty());
    assert!(usage.completion_tokens >= 1 && usage.completion_tokens <= 12);
}

#[test]
fn completions_with_echo_and_logprobs() {
    let Some(s) = Server::smollm2("smol", &[]) else { return };
    let prompt = "The capital of France is";
    let req =
        json!({"model": "smol", "prompt": prompt, "max_tokens": 4, "temperature": 0, "echo": true, "logprobs": 2});
    let (status, body) = s.post("/v1/completions", &req, None);
    assert_eq!(status, 200, "{body}");
    let resp: CompletionResponse = serde_json::from_value(body.clone()).unwrap();
    assert!(resp.id.starts_with("cmpl-"));
    assert_eq!((resp.object.as_str(), resp.model.as_str()), ("text_completion", "smol"));
    let choice = &resp.choices[0];
    assert!(choice.text.starts_with(prompt) && choice.text.len() > prompt.len(), "{:?}", choice.text);
    let lp = choice.logprobs.as_ref().expect("logprobs");
    let n = lp.tokens.len();
    assert_eq!((lp.token_logprobs.len(), lp.top_logprobs.len(), lp.text_offset.len()), (n, n, n));
    assert_eq!(n as u32, resp.usage.prompt_tokens + resp.usage.completion_tokens, "{body}");
    assert_eq!(lp.token_logprobs[0], None, "the first echoed token has no logprob");
    assert!(lp.top_logprobs[0].is_none());
    assert!(lp.token_logprobs[1..].iter().all(|l| l.is_some_and(|l| l <= 0.0)));
    assert!(lp.top_logprobs[1..].iter().all(|t| t.as_ref().is_some_and(|m| !m.is_empty() && m.len() <= 3)));
    assert!(lp.text_offset.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(lp.tokens.concat(), choice.text, "tokens spell the text");
    // Streamed: the same text in pieces.
    let (status, _, data) = s.post_stream(
        "/v1/completions",
        &json!({"model": "smol", "prompt": prompt,
        "max_tokens": 4, "temperature": 0, "stream": true}),
    );
    assert_eq!(status, 200);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let streamed: String = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .flat_map(|c| {
            c["choices"]
                .as_array()
                .unwrap()
                .iter()
                .map(|ch| ch["text"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(format!("{prompt}{streamed}"), choice.text);
}

#[test]
fn metrics_count_requests_and_engine_state() {
    let Some(s) = Server::smollm2("smol", &[]) else { return };
    let req = json!({"model": "smol", "prompt": "Hi", "max_tokens": 2});
    assert_eq!(s.post("/v1/completions", &req, None).0, 200);
    assert_eq!(s.post("/v1/completions", &json!({"model": "x", "prompt": "Hi"}), None).0, 404);
    let (status, _, data) = s.post_stream(
        "/v1/chat/completions",
        &json!({"model": "smol", "max_tokens": 2,
        "messages": [{"role": "user", "content": "Hi"}], "stream": true}),
    );
    assert_eq!((status, data.last().map(String::as_str)), (200, Some("[DONE]")));
    // A stream is counted when its body ends, which may be just after the client read [DONE].
    let chat_done = "ferrite_http_requests_total{route=\"/v1/chat/completions\",status=\"200\"} 1";
    wait_for_metric(&s, chat_done, Duration::from_secs(10)).unwrap();
    let text =
        wait_for_metric(&s, "ferrite:num_requests_running{model_name=\"smol\"} 0", Duration::from_secs(10)).unwrap();
    for want in [
        "ferrite_http_requests_total{route=\"/v1/completions\",status=\"200\"} 1",
        "ferrite_http_requests_total{route=\"/v1/completions\",status=\"404\"} 1",
        "ferrite_http_request_duration_seconds_count{route=\"/v1/completions\"} 2",
        "ferrite:num_requests_waiting{model_name=\"smol\"} 0",
        "ferrite:kv_cache_usage_perc{model_name=\"smol\"} 0",
        // Both generations, the whole one and the stream, are timed by the engine.
        "ferrite:time_to_first_token_seconds_count{model_name=\"smol\"} 2",
        "ferrite:e2e_request_latency_seconds_count{model_name=\"smol\"} 2",
        "# TYPE ferrite:time_per_output_token_seconds histogram",
    ] {
        assert!(text.lines().any(|l| l == want), "missing {want:?} in\n{text}");
    }
    for prefix in
        ["ferrite:prompt_tokens_total{model_name=\"smol\"} ", "ferrite:generation_tokens_total{model_name=\"smol\"} "]
    {
        let v: u64 = text.lines().find_map(|l| l.strip_prefix(prefix)).unwrap().parse().unwrap();
        assert!(v > 0, "{prefix}{v}");
    }
    // The KV layout, as labels of an info gauge: 16-token blocks, a positive block count.
    let info = text.lines().find(|l| l.starts_with("ferrite:cache_config_info{")).unwrap();
    let blocks: u64 = info.split("num_gpu_blocks=\"").nth(1).unwrap().split('"').next().unwrap().parse().unwrap();
    assert!(info.contains("block_size=\"16\"") && blocks > 0 && info.ends_with("} 1"), "{info}");
}
