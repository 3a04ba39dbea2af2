//! The types read and write the JSON of the OpenAI API reference's examples, field for field.

#![allow(clippy::unwrap_used)]

use ferrite::*;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

/// Parses `v` as `T` and checks that serialising it gives `v` back exactly (through text, as on
/// the wire: `f32` fields print their shortest form, `0.05` rather than `0.05000000074505806`).
fn round_trip<T: DeserializeOwned + Serialize>(v: Value) -> T {
    let parsed: T = serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("parse {v}: {e}"));
    let text = serde_json::to_string(&parsed).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), v);
    parsed
}

fn parse_err<T: DeserializeOwned + std::fmt::Debug>(v: Value) -> String {
    serde_json::from_value::<T>(v).unwrap_err().to_string()
}

#[test]
fn chat_request_basic() {
    let req: ChatCompletionRequest = round_trip(json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "developer", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Hello!"}
        ]
    }));
    assert_eq!(req.messages[0].role, Role::Developer);
    assert_eq!(req.messages[1].text(), "Hello!");
    req.validate().unwrap();
}

#[test]
fn chat_request_with_every_sampling_field() {
    let req: ChatCompletionRequest = round_trip(json!({
        "model": "smollm2",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}],
        "max_completion_tokens": 20, "logprobs": true, "top_logprobs": 2,
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}, "strict": true}},
        "store": false, "metadata": {"k": "v"}, "service_tier": "auto", "modalities": ["text"],
        "max_tokens": 10, "stream": true, "stream_options": {"include_usage": true}, "temperature": 0.7,
        "top_p": 0.9, "n": 2, "stop": ["\n", "END"], "presence_penalty": 0.5, "frequency_penalty": -0.5,
        "logit_bias": {"50256": -100.0}, "seed": 42, "user": "u1", "top_k": 40, "min_p": 0.05,
        "repetition_penalty": 1.1, "stop_token_ids": [2], "ignore_eos": true
    }));
    assert_eq!(req.messages[0].text(), "a\nb");
    assert_eq!(req.max_new_tokens(), Some(20));
    assert_eq!(req.logit_bias_ids(), vec![(50256, -100.0)]);
    assert_eq!(req.stop.as_ref().unwrap().as_slice().len(), 2);
    req.validate().unwrap();
}

#[test]
fn chat_request_with_tools_and_tool_messages() {
    let req: ChatCompletionRequest = round_trip(json!({
        "model": "gpt-4.1",
        "messages": [
            {"role": "user", "content": "What is the weather like in Boston today?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_abc123", "type": "function",
                "function": {"name": "get_current_weather", "arguments": "{\"location\": \"Boston, MA\"}"}}]},
            {"role": "tool", "content": "22C, sunny", "tool_call_id": "call_abc123"}
        ],
        "tools": [{"type": "function", "function": {
            "name": "get_current_weather",
            "description": "Get the current weather in a given location",
            "parameters": {"type": "object", "properties": {
                "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["location"]}}}],
        "tool_choice": "auto",
        "parallel_tool_calls": false
    }));
    req.validate().unwrap();
    let named: ChatCompletionRequest = round_trip(json!({
        "model": "m", "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}}
    }));
    assert_eq!(named.tool_choice, Some(ToolChoice::function("f")));
}

#[test]
fn client_echoed_assistant_fields_are_tolerated_in_messages() {
    let req: ChatCompletionRequest = serde_json::from_value(json!({
        "model": "m",
        "messages": [{"role": "assistant", "content": "hi", "refusal": null, "annotations": [], "audio": null},
                     {"role": "user", "content": "more"}]
    }))
    .unwrap();
    req.validate().unwrap();
}

#[test]
fn unknown_and_unsupported_shapes_are_rejected_by_the_parser() {
    let err = parse_err::<ChatCompletionRequest>(json!({"model": "m", "messages": [], "foo": 1}));
    assert!(err.contains("unknown field `foo`"), "{err}");
    let err = parse_err::<CompletionRequest>(json!({"model": "m", "prompt": "x", "bar": 1}));
    assert!(err.contains("unknown field `bar`"), "{err}");
    let err = parse_err::<ChatCompletionRequest>(json!({"model": "m", "messages": [{"role": "user", "content":
        [{"type": "image_url", "image_url": {"url": "http://x"}}]}]}));
    assert!(err.contains("image_url"), "{err}");
    let err =
        parse_err::<ChatCompletionRequest>(json!({"model": "m", "messages": [{"role": "function", "content": "x"}]}));
    assert!(err.contains("function"), "{err}");
    let err = parse_err::<ChatCompletionRequest>(json!({"model": "m", "messages": [], "tool_choice": "sometimes"}));
    assert!(err.contains("unknown tool_choice"), "{err}");
    let err = parse_err::<ChatCompletionRequest>(json!({"model": "m", "messages": [], "stop": 3}));
    assert!(err.contains("a string or an array of strings"), "{err}");
    let err = parse_err::<ChatCompletionRequest>(json!({"model": "m", "messages": [], "temperature": "hot"}));
    assert!(err.contains("invalid type"), "{err}");
    let err = parse_err::<CompletionRequest>(json!({"model": "m", "prompt": [1, "a"]}));
    assert!(err.contains("token ids"), "{err}");
    let err = parse_err::<CompletionRequest>(json!({"model": "m", "prompt": {"a": 1}}));
    assert!(err.contains("array of token ids"), "{err}");
}

#[test]
fn completion_request_prompt_forms() {
    let req: CompletionRequest = round_trip(json!({
        "model": "gpt-3.5-turbo-instruct", "prompt": "Say this is a test", "max_tokens": 7, "temperature": 0.0
    }));
    assert_eq!(req.prompt, Prompt::from("Say this is a test"));
    let texts: CompletionRequest = round_trip(json!({"model": "m", "prompt": ["a", "b"]}));
    assert_eq!(texts.prompt.len(), 2);
    let tokens: CompletionRequest = round_trip(json!({"model": "m", "prompt": [1, 2, 3]}));
    assert_eq!(tokens.prompt, Prompt::Tokens(vec![1, 2, 3]));
    let batches: CompletionRequest = round_trip(json!({"model": "m", "prompt": [[1, 2], [3]]}));
    assert_eq!(batches.prompt, Prompt::TokenBatches(vec![vec![1, 2], vec![3]]));
    let full: CompletionRequest = round_trip(json!({
        "model": "m", "prompt": "x", "suffix": "y", "logprobs": 5, "echo": true, "best_of": 1, "n": 1
    }));
    assert_eq!(full.max_new_tokens(), 16);
}

#[test]
fn chat_response_and_tool_call_response() {
    let resp: ChatCompletionResponse = round_trip(json!({
        "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT", "object": "chat.completion", "created": 1741569952,
        "model": "gpt-4.1-2025-04-14",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello! How can I assist you today?"},
                     "logprobs": null, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29,
                  "prompt_tokens_details": {"cached_tokens": 0}}
    }));
    assert_eq!(resp.choices[0].finish_reason, Some(FinishReason::Stop));
    let tools: ChatCompletionResponse = round_trip(json!({
        "id": "chatcmpl-abc123", "object": "chat.completion", "created": 1699896916, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": [{
            "id": "call_abc123", "type": "function",
            "function": {"name": "get_current_weather", "arguments": "{\n\"location\": \"Boston, MA\"\n}"}}]},
            "logprobs": {"content": [{"token": "Hi", "logprob": -0.5, "bytes": [72, 105],
                                      "top_logprobs": [{"token": "Hi", "logprob": -0.5, "bytes": [72, 105]}]}]},
            "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 82, "completion_tokens": 17, "total_tokens": 99},
        "system_fingerprint": "fp_1"
    }));
    assert_eq!(tools.choices[0].finish_reason, Some(FinishReason::ToolCalls));
    // The full OpenAI example (with fields ferrite never sends) still parses, for Rust clients.
    let _: ChatCompletionResponse = serde_json::from_value(json!({
        "id": "c", "object": "chat.completion", "created": 1, "model": "m", "service_tier": "default",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "x", "refusal": null, "annotations": []},
                     "logprobs": null, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2,
                  "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                  "completion_tokens_details": {"reasoning_tokens": 0}}
    }))
    .unwrap();
}

#[test]
fn chat_chunks() {
    let first: ChatCompletionChunk = round_trip(json!({
        "id": "chatcmpl-123", "object": "chat.completion.chunk", "created": 1694268190, "model": "gpt-4o-mini",
        "system_fingerprint": "fp_44709d6fcb",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}]
    }));
    assert_eq!(first.choices[0].delta.role, Some(Role::Assistant));
    let _: ChatCompletionChunk = round_trip(json!({
        "id": "chatcmpl-123", "object": "chat.completion.chunk", "created": 1694268190, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": {}, "logprobs": null, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21}
    }));
    let _: ChatCompletionChunk = round_trip(json!({
        "id": "chatcmpl-123", "object": "chat.completion.chunk", "created": 1694268190, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
            "function": {"name": "f", "arguments": ""}}]}, "logprobs": null, "finish_reason": null}]
    }));
    let usage_only: ChatCompletionChunk = round_trip(json!({
        "id": "chatcmpl-123", "object": "chat.completion.chunk", "created": 1694268190, "model": "gpt-4o-mini",
        "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21}
    }));
    assert_eq!(usage_only.usage, Some(Usage::new(9, 12)));
    let built = ChatCompletionChunk::new("chatcmpl-1", 1, "m", vec![]);
    assert_eq!(serde_json::to_value(built).unwrap()["object"], "chat.completion.chunk");
}

#[test]
fn completion_response_with_echo_logprobs() {
    let resp: CompletionResponse = round_trip(json!({
        "id": "cmpl-uqkvlQyYK7bGYrRHQ0eXlWi7", "object": "text_completion", "created": 1589478378,
        "model": "gpt-3.5-turbo-instruct", "system_fingerprint": "fp_44709d6fcb",
        "choices": [{"text": "Hi there", "index": 0, "finish_reason": "length", "logprobs": {
            "tokens": ["Hi", " there"], "token_logprobs": [null, -0.25],
            "top_logprobs": [null, {" there": -0.25, " you": -2.5}], "text_offset": [0, 2]}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    }));
    let lp = resp.choices[0].logprobs.as_ref().unwrap();
    assert_eq!(lp.token_logprobs[0], None);
    let _: CompletionChunk = round_trip(json!({
        "id": "cmpl-1", "object": "text_completion", "created": 1, "model": "m",
        "choices": [{"text": " a", "index": 0, "logprobs": null, "finish_reason": null}]
    }));
}

#[test]
fn models_and_errors() {
    let list: ModelList = round_trip(json!({"object": "list", "data": [
        {"id": "model-id-0", "object": "model", "created": 1686935002, "owned_by": "organization-owner"}]}));
    assert_eq!(list, ModelList::new(vec![ModelInfo::new("model-id-0", 1686935002, "organization-owner")]));
    let body: ErrorBody = round_trip(json!({"error": {"message": "Unrecognized request argument supplied: foo",
        "type": "invalid_request_error", "param": null, "code": null}}));
    assert_eq!(body, ErrorBody::new("invalid_request_error", "Unrecognized request argument supplied: foo"));
    let from_invalid: ErrorBody = InvalidField::new("n", "bad n").into();
    assert_eq!(
        serde_json::to_value(from_invalid).unwrap(),
        json!({"error": {"message": "bad n", "type": "invalid_request_error", "param": "n", "code": null}})
    );
}

#[test]
fn builders_write_the_same_json_as_clients() {
    let req = ChatCompletionRequest::new("m", [ChatMessage::system("s"), ChatMessage::user("u")])
        .max_tokens(8)
        .temperature(0.0)
        .stop(["a", "b"])
        .tools([Tool::function("f", "does f", json!({"type": "object"}))])
        .tool_choice(ToolChoice::function("f"))
        .response_format(ResponseFormat::JsonObject)
        .stream_with_usage(true);
    assert_eq!(
        serde_json::to_value(&req).unwrap(),
        json!({"model": "m", "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
               "tools": [{"type": "function", "function": {"name": "f", "description": "does f",
                          "parameters": {"type": "object"}}}],
               "tool_choice": {"type": "function", "function": {"name": "f"}},
               "response_format": {"type": "json_object"}, "max_tokens": 8, "stream": true,
               "stream_options": {"include_usage": true}, "temperature": 0.0, "stop": ["a", "b"]})
    );
    req.validate().unwrap();
    let c = CompletionRequest::new("m", "x").max_tokens(0).echo(true).logprobs(3).n(2).seed(7);
    c.validate().unwrap();
    assert_eq!(serde_json::to_value(&c).unwrap()["logprobs"], 3);
}
