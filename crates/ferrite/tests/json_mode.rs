//! Guaranteed JSON on the real Qwen2.5-Coder-0.5B-Instruct: `response_format` `json_object`
//! (and its alias `json`) and `json_schema`, greedy and sampled, through the facade.

#![allow(clippy::unwrap_used)]

use std::sync::OnceLock;

use ferrite::{ChatCompletionRequest, ChatMessage, Engine, Error, FinishReason, ResponseFormat};
use ferrite_tensor::model_files::QWEN25;
use futures_util::future::join_all;
use serde_json::{json, Value};

mod common;

use common::block_on;

fn engine() -> Option<&'static Engine> {
    static ENGINE: OnceLock<Option<Engine>> = OnceLock::new();
    common::shared_engine(&ENGINE, QWEN25, 128)
}

const PROMPTS: [&str; 20] = [
    "Describe a cat with its name, age and favourite food.",
    "Give the capital, population and currency of Japan.",
    "List three primary colours.",
    "A book: title, author, year.",
    "What is 2 + 2? Answer with the result and an explanation.",
    "Make a todo list with three items, each with a priority.",
    "Describe the weather in Paris today (make it up).",
    "A user profile with username, email and a list of roles.",
    "Translate 'hello' into French, Spanish and German.",
    "Give the first five prime numbers and their sum.",
    "A recipe for pancakes: ingredients and steps.",
    "Describe a car: make, model, year, electric or not.",
    "Name a famous play, its author and the year it was written.",
    "An HTTP error: status code, message, retryable flag.",
    "Three planets with their order from the sun.",
    "A point in 3D space.",
    "Configuration for a web server: host, port, tls.",
    "The name and symbol of the element with atomic number 8.",
    "Write a short poem as a JSON object with a title and lines.",
    "A chess move in algebraic notation with the piece moved.",
];

fn json_request(prompt: &str, i: usize) -> ChatCompletionRequest {
    let format =
        if i % 5 == 4 { serde_json::from_value(json!({"type": "json"})).unwrap() } else { ResponseFormat::JsonObject };
    // Half greedy, half sampled with a fixed seed. A 0.5B model left greedy loops on list items
    // ("And the wind blows through the trees," until max_tokens) with or without a grammar; a
    // mild repetition penalty, as usual for small models, lets every answer end. (Greedy is not
    // bit-stable here: which requests share a batch can change the GEMM path and its summation order, so a loop seen on one
    // machine may not show on another; the penalty is what makes the test hold everywhere.)
    let temperature = [0.0, 0.6][i % 2];
    ChatCompletionRequest::new("qwen", [ChatMessage::system("You answer in JSON only."), ChatMessage::user(prompt)])
        .response_format(format)
        .temperature(temperature)
        .seed(1000 + i as i64)
        .frequency_penalty(0.5)
        .max_tokens(400)
}

#[test]
fn json_object_outputs_parse_for_twenty_prompts() {
    let Some(e) = engine() else { return };
    let requests: Vec<_> = PROMPTS.iter().enumerate().map(|(i, p)| e.chat(json_request(p, i))).collect();
    let answers = block_on(join_all(requests));
    for (i, a) in answers.into_iter().enumerate() {
        let a = a.unwrap();
        let choice = &a.choices[0];
        let text = choice.message.content.clone().unwrap();
        assert_eq!(choice.finish_reason, Some(FinishReason::Stop), "prompt {i} did not finish: {text}");
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|err| panic!("prompt {i}: {err}: {text}"));
        assert!(v.is_object(), "prompt {i}: not an object: {text}");
    }
}

/// Three sampled choices, each under its own grammar. The schema bounds every field, so each
/// answer must close well within `max_tokens`: a free-form `json_object` answer sampled from a
/// 0.5B model sometimes rambles past any limit, and a cut answer cannot be valid JSON.
#[test]
fn every_choice_of_n_is_constrained() {
    let Some(e) = engine() else { return };
    let schema = json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 20},
            "breed": {"type": "string", "maxLength": 30},
            "age": {"type": "integer", "minimum": 0, "maximum": 30},
            "good": {"type": "boolean"}
        },
        "required": ["name", "breed", "age", "good"],
        "additionalProperties": false
    });
    let req = ChatCompletionRequest::new("qwen", [ChatMessage::user("Describe a dog.")])
        .response_format(ResponseFormat::json_schema("dog", schema))
        .temperature(0.8)
        .seed(1001)
        .max_tokens(300)
        .n(3);
    let a = block_on(e.chat(req)).unwrap();
    assert_eq!(a.choices.len(), 3);
    for c in &a.choices {
        let text = c.message.content.clone().unwrap();
        assert_eq!(c.finish_reason, Some(FinishReason::Stop), "{text}");
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|err| panic!("{err}: {text}"));
        let o = v.as_object().unwrap();
        assert_eq!(o.len(), 4, "{text}");
        assert!(o["name"].as_str().unwrap().chars().count() <= 20, "{text}");
        assert!((0..=30).contains(&o["age"].as_i64().unwrap()) && o["good"].is_boolean(), "{text}");
    }
}

fn person_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer", "minimum": 0},
            "role": {"enum": ["admin", "editor", "viewer"]},
            "address": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "zip": {"type": "string"}},
                "required": ["city", "zip"],
                "additionalProperties": false
            }
        },
        "required": ["name", "age", "role", "address"],
        "additionalProperties": false
    })
}

/// Checks `v` against `person_schema` by hand.
fn check_person(v: &Value) -> Result<(), String> {
    let o = v.as_object().ok_or("not an object")?;
    let keys: Vec<&str> = o.keys().map(String::as_str).collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    if sorted != ["address", "age", "name", "role"] {
        return Err(format!("keys {keys:?}"));
    }
    o["name"].as_str().ok_or("name is not a string")?;
    let age = o["age"].as_u64().ok_or("age is not a non-negative integer")?;
    if o["age"].is_f64() {
        return Err(format!("age {age} is a float"));
    }
    let role = o["role"].as_str().ok_or("role is not a string")?;
    if !["admin", "editor", "viewer"].contains(&role) {
        return Err(format!("role {role:?} is not in the enum"));
    }
    let addr = o["address"].as_object().ok_or("address is not an object")?;
    let mut ak: Vec<&str> = addr.keys().map(String::as_str).collect();
    ak.sort_unstable();
    if ak != ["city", "zip"] || !addr.values().all(Value::is_string) {
        return Err(format!("address {addr:?}"));
    }
    Ok(())
}

#[test]
fn json_schema_outputs_validate() {
    let Some(e) = engine() else { return };
    let prompts = [
        "Invent a person who administers a website in Berlin.",
        "Create a profile for Alice, 34, who can only read documents.",
        "Make up a user.",
        "Bob edits articles and lives in Lyon.",
    ];
    let requests: Vec<_> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let req = ChatCompletionRequest::new("qwen", [ChatMessage::user(*p)])
                .response_format(ResponseFormat::json_schema("person", person_schema()))
                .temperature(if i % 2 == 0 { 0.0 } else { 0.9 })
                .seed(7 + i as i64)
                .max_tokens(300);
            e.chat(req)
        })
        .collect();
    for (i, a) in block_on(join_all(requests)).into_iter().enumerate() {
        let a = a.unwrap();
        let text = a.choices[0].message.content.clone().unwrap();
        assert_eq!(a.choices[0].finish_reason, Some(FinishReason::Stop), "prompt {i}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|err| panic!("prompt {i}: {err}: {text}"));
        check_person(&v).unwrap_or_else(|err| panic!("prompt {i}: {err}: {text}"));
    }
}

#[test]
fn invalid_schema_is_a_400_on_response_format() {
    let Some(e) = engine() else { return };
    let bad = ChatCompletionRequest::new("qwen", [ChatMessage::user("hi")])
        .response_format(ResponseFormat::json_schema("bad", json!({"type": "no-such-type"})))
        .max_tokens(8);
    match block_on(e.chat(bad)) {
        Err(Error::InvalidRequest { param: Some(p), message, .. }) => {
            assert_eq!(p, "response_format");
            assert!(message.contains("no-such-type"), "{message}");
        }
        other => panic!("expected a 400 on response_format, got {other:?}"),
    }
}

#[test]
fn streamed_json_equals_whole() {
    use futures_util::StreamExt;
    let Some(e) = engine() else { return };
    let req = json_request("Give the capital, population and currency of France.", 0);
    let whole = block_on(e.chat(req.clone())).unwrap();
    let chunks: Vec<_> = block_on(e.chat_stream(req).unwrap().collect::<Vec<_>>());
    let streamed: String =
        chunks.into_iter().map(Result::unwrap).filter_map(|c| c.choices.first()?.delta.content.clone()).collect();
    assert_eq!(streamed, whole.choices[0].message.content.clone().unwrap());
    assert!(serde_json::from_str::<Value>(&streamed).unwrap().is_object());
}
