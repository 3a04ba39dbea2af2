//! Every `validate` rule: the error names the field at fault and says what is wrong.

#![allow(clippy::unwrap_used)]

use ferrite::*;
use serde_json::json;

fn chat() -> ChatCompletionRequest {
    ChatCompletionRequest::new("m", [ChatMessage::user("hi")])
}

fn completion() -> CompletionRequest {
    CompletionRequest::new("m", "hi")
}

/// Asserts `r` fails on `param` with a message containing `needle`.
fn fails(r: Result<(), InvalidField>, param: &str, needle: &str) {
    let e = r.expect_err("should be invalid");
    assert_eq!(e.param.as_deref(), Some(param), "{e}");
    assert!(e.message.contains(needle), "{:?} lacks {needle:?}", e.message);
}

#[test]
fn messages_rules() {
    fails(ChatCompletionRequest::new("m", []).validate(), "messages", "at least one");
    let mut no_content = chat();
    no_content.messages[0].content = None;
    fails(no_content.validate(), "messages[0].content", "needs content");
    let tool_without_id = ChatMessage { tool_call_id: None, ..ChatMessage::tool("x", "r") };
    fails(ChatCompletionRequest::new("m", [tool_without_id]).validate(), "messages[0].tool_call_id", "needs");
    let user_with_id = ChatMessage { tool_call_id: Some("x".into()), ..ChatMessage::user("u") };
    fails(ChatCompletionRequest::new("m", [user_with_id]).validate(), "messages[0].tool_call_id", "only tool");
    let user_with_calls = ChatMessage { tool_calls: Some(vec![]), ..ChatMessage::user("u") };
    fails(ChatCompletionRequest::new("m", [user_with_calls]).validate(), "messages[0].tool_calls", "only assistant");
    let call = ToolCall {
        id: "c".into(),
        kind: ToolType::Function,
        function: FunctionCall { name: "f".into(), arguments: "{}".into() },
    };
    let ok = [ChatMessage::user("u"), ChatMessage::assistant_tool_calls(vec![call]), ChatMessage::tool("c", "r")];
    ChatCompletionRequest::new("m", ok).validate().unwrap();
}

#[test]
fn n_and_max_tokens() {
    fails(chat().n(0).validate(), "n", "between 1 and 128");
    fails(chat().n(129).validate(), "n", "between 1 and 128");
    chat().n(128).validate().unwrap();
    fails(chat().max_tokens(0).validate(), "max_tokens", "at least 1");
    let mut r = chat();
    r.max_completion_tokens = Some(0);
    fails(r.validate(), "max_completion_tokens", "at least 1");
    fails(completion().max_tokens(0).validate(), "max_tokens", "only with echo");
    completion().max_tokens(0).echo(true).validate().unwrap();
    fails(completion().n(0).validate(), "n", "between");
}

#[test]
fn logprobs_rules() {
    fails(chat().logprobs(21).validate(), "top_logprobs", "between 0 and 20");
    chat().logprobs(20).validate().unwrap();
    let mut r = chat();
    r.top_logprobs = Some(2);
    fails(r.validate(), "top_logprobs", "requires logprobs");
    fails(completion().logprobs(21).validate(), "logprobs", "between 0 and 20");
    completion().logprobs(5).validate().unwrap();
}

#[test]
fn best_of_and_suffix() {
    let mut r = completion().n(2);
    r.best_of = Some(3);
    fails(r.validate(), "best_of", "must equal n");
    r.best_of = Some(2);
    r.validate().unwrap();
    r.suffix = Some("end".into());
    fails(r.validate(), "suffix", "not supported");
    fails(CompletionRequest::new("m", Vec::<String>::new()).validate(), "prompt", "empty");
    fails(CompletionRequest::new("m", Prompt::TokenBatches(vec![vec![]])).validate(), "prompt", "empty");
}

#[test]
fn stop_rules() {
    fails(chat().stop(["a", "b", "c", "d", "e"]).validate(), "stop", "at most 4");
    fails(chat().stop("").validate(), "stop", "empty");
    chat().stop(["a", "b", "c", "d"]).validate().unwrap();
    fails(completion().stop(vec!["a", ""]).validate(), "stop", "empty");
}

#[test]
fn tools_and_response_format() {
    let f = Tool::function("f", "d", json!({"type": "object"}));
    fails(chat().tool_choice(ToolChoice::function("g")).validate(), "tool_choice", "not in tools");
    fails(chat().tools([f.clone()]).tool_choice(ToolChoice::function("g")).validate(), "tool_choice", "\"g\"");
    chat().tools([f]).tool_choice(ToolChoice::function("f")).validate().unwrap();
    fails(chat().tool_choice(ToolChoice::Mode(ToolChoiceMode::Required)).validate(), "tool_choice", "needs tools");
    chat().tool_choice(ToolChoice::Mode(ToolChoiceMode::None)).validate().unwrap();
    let no_schema = ResponseFormat::JsonSchema {
        json_schema: JsonSchemaFormat { name: "x".into(), description: None, schema: None, strict: None },
    };
    fails(chat().response_format(no_schema).validate(), "response_format.json_schema.schema", "needs a schema");
    chat().response_format(ResponseFormat::json_schema("x", json!({"type": "object"}))).validate().unwrap();
}

#[test]
fn unsupported_features() {
    let mut r = chat();
    r.modalities = Some(vec!["text".into(), "audio".into()]);
    fails(r.validate(), "modalities", "text");
    r.modalities = Some(vec!["text".into()]);
    r.validate().unwrap();
    r.audio = Some(json!({"voice": "alloy", "format": "wav"}));
    fails(r.validate(), "audio", "not supported");
    let mut r = chat();
    r.prediction = Some(json!({"type": "content", "content": "x"}));
    fails(r.validate(), "prediction", "not supported");
}

#[test]
fn sampling_ranges() {
    fails(chat().temperature(3.0).validate(), "temperature", "between 0 and 2");
    fails(chat().temperature(f32::NAN).validate(), "temperature", "between");
    fails(chat().top_p(0.0).validate(), "top_p", "(0, 1]");
    fails(chat().top_p(1.5).validate(), "top_p", "(0, 1]");
    fails(chat().presence_penalty(2.5).validate(), "presence_penalty", "between -2 and 2");
    fails(chat().frequency_penalty(-3.0).validate(), "frequency_penalty", "between -2 and 2");
    fails(chat().logit_bias(1, 101.0).validate(), "logit_bias", "between -100 and 100");
    let mut r = chat();
    r.logit_bias = Some([("abc".to_string(), 1.0)].into());
    fails(r.validate(), "logit_bias", "token ids");
    fails(chat().top_k(-2).validate(), "top_k", "-1");
    chat().top_k(-1).validate().unwrap();
    fails(chat().min_p(1.5).validate(), "min_p", "between 0 and 1");
    fails(chat().repetition_penalty(0.0).validate(), "repetition_penalty", "> 0");
    let mut r = chat();
    r.stream_options = Some(StreamOptions { include_usage: true });
    fails(r.validate(), "stream_options", "only allowed when stream");
    fails(completion().temperature(-0.1).validate(), "temperature", "between");
    chat().temperature(2.0).top_p(1.0).min_p(0.0).repetition_penalty(1.2).seed(-1).validate().unwrap();
}
