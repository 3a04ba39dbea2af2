//! Unit tests of the tool-call parsers and grammars.

use serde_json::json;

use super::*;

fn call(name: &str, arguments: &str) -> ParsedToolCall {
    ParsedToolCall { name: name.to_owned(), arguments: arguments.to_owned() }
}

fn parsed(content: &str, calls: Vec<ParsedToolCall>) -> ParsedOutput {
    ParsedOutput { content: content.to_owned(), calls }
}

/// Feeds `deltas` one by one and collects the result as one [`ParsedOutput`].
fn stream(format: ToolCallFormat, deltas: &[&str]) -> ParsedOutput {
    let mut p = ToolCallParser::new(format);
    let mut items: Vec<ToolOutput> = deltas.iter().flat_map(|d| p.push(d)).collect();
    items.extend(p.finish());
    let mut out = ParsedOutput::default();
    for item in items {
        match item {
            ToolOutput::Content(c) => out.content.push_str(&c),
            ToolOutput::Call(c) => out.calls.push(c),
        }
    }
    out
}

/// Streaming `text` split in two at every char boundary, and char by char, gives `want`.
fn check_splits(format: ToolCallFormat, text: &str, want: &ParsedOutput) {
    assert_eq!(&parse(format, text), want, "whole: {text:?}");
    for i in (0..=text.len()).filter(|&i| text.is_char_boundary(i)) {
        assert_eq!(&stream(format, &[&text[..i], &text[i..]]), want, "split at {i}: {text:?}");
    }
    let chars: Vec<String> = text.chars().map(String::from).collect();
    let chars: Vec<&str> = chars.iter().map(String::as_str).collect();
    assert_eq!(&stream(format, &chars), want, "char by char: {text:?}");
}

const WEATHER: &str = r#"{"location": "Paris", "unit": "celsius"}"#;
const WEATHER_COMPACT: &str = r#"{"location":"Paris","unit":"celsius"}"#;

#[test]
fn hermes_single_call() {
    let text = format!("<tool_call>\n{{\"name\": \"get_current_weather\", \"arguments\": {WEATHER}}}\n</tool_call>");
    check_splits(ToolCallFormat::Hermes, &text, &parsed("", vec![call("get_current_weather", WEATHER_COMPACT)]));
}

#[test]
fn hermes_content_then_several_calls() {
    let text =
        "Let me check both.\n<tool_call>\n{\"name\": \"w\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n\
                <tool_call>\n{\"name\": \"w\", \"arguments\": {\"city\": \"Rome — été\"}}\n</tool_call>";
    let want =
        parsed("Let me check both.", vec![call("w", r#"{"city":"Paris"}"#), call("w", r#"{"city":"Rome — été"}"#)]);
    check_splits(ToolCallFormat::Hermes, text, &want);
}

#[test]
fn hermes_bare_call_objects() {
    let f = ToolCallFormat::Hermes;
    let text = format!("{{\"name\": \"get_current_weather\", \"arguments\": {WEATHER}}}");
    check_splits(f, &text, &parsed("", vec![call("get_current_weather", WEATHER_COMPACT)]));
    let text = "\n{\"name\": \"a\", \"arguments\": {}}\n{\"name\": \"b\", \"arguments\": {}}\nDone.";
    check_splits(f, text, &parsed("Done.", vec![call("a", "{}"), call("b", "{}")]));
    let text = "{\"name\": \"a\"}\n<tool_call>{\"name\": \"b\"}</tool_call>";
    check_splits(f, text, &parsed("", vec![call("a", "{}"), call("b", "{}")]));
    // Only where a call may start, and only call objects.
    for text in
        ["Here: {\"name\": \"a\", \"arguments\": {}}", "{\"answer\": 42}", "{\"name\": 3}", "{oops", "{\"name\""]
    {
        check_splits(f, text, &parsed(text, vec![]));
    }
}

#[test]
fn hermes_argument_shapes() {
    let f = ToolCallFormat::Hermes;
    // Arguments as a JSON string holding an object, missing, or under Llama's key.
    let t = r#"<tool_call>{"name": "f", "arguments": "{\"a\": [1, 2]}"}</tool_call>"#;
    assert_eq!(parse(f, t), parsed("", vec![call("f", r#"{"a":[1,2]}"#)]));
    assert_eq!(parse(f, r#"<tool_call>{"name": "now"}</tool_call>"#), parsed("", vec![call("now", "{}")]));
    let t = r#"<tool_call>{"name": "f", "parameters": {"z": 1, "a": 2}}</tool_call>"#;
    assert_eq!(parse(f, t), parsed("", vec![call("f", r#"{"z":1,"a":2}"#)]));
    // Left open at the end of the output: still a call when complete.
    check_splits(f, "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n", &parsed("", vec![call("f", "{}")]));
}

#[test]
fn hermes_malformed_stays_content() {
    let f = ToolCallFormat::Hermes;
    for text in [
        "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": }\n</tool_call>",
        "<tool_call>\nnot json\n</tool_call> after",
        "<tool_call>{\"arguments\": {}}</tool_call>",
        "<tool_call>{\"name\": \"f\", \"arguments\": 3}</tool_call>",
        "<tool_call>[1, 2]</tool_call>",
        "<tool_call>{\"name\": \"f\"} trailing</tool_call>",
        "<tool_call>\n{\"name\": \"f\", \"argu",
        "<tool_call>",
        "<tool_call",
        "a < b and <tool_ca",
    ] {
        check_splits(f, text, &parsed(text, vec![]));
    }
    // A malformed block does not hide a good one after it.
    let text = "<tool_call>oops</tool_call>\n<tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call>";
    check_splits(f, text, &parsed("<tool_call>oops</tool_call>", vec![call("f", "{}")]));
}

#[test]
fn plain_text_is_untouched() {
    for f in [ToolCallFormat::Hermes, ToolCallFormat::Llama3Json, ToolCallFormat::MistralJson] {
        let text = "  The weather in Paris is 18 °C.\n\nEnjoy! [1] {x} <b>\n";
        check_splits(f, text, &parsed(text, vec![]));
    }
}

#[test]
fn streaming_holds_back_only_a_possible_marker() {
    let mut p = ToolCallParser::new(ToolCallFormat::Hermes);
    assert_eq!(p.push("Sure <tool"), vec![ToolOutput::Content("Sure".into())]);
    assert_eq!(p.push("_c"), vec![]);
    assert_eq!(p.push("x"), vec![ToolOutput::Content(" <tool_cx".into())]);
    let mut p = ToolCallParser::new(ToolCallFormat::Hermes);
    assert_eq!(p.push("<tool_call>\n{\"name\": \"f\", \"arguments\": {}}"), vec![]);
    assert_eq!(p.push("\n</tool_call>"), vec![ToolOutput::Call(call("f", "{}"))]);
    assert_eq!(p.push("\n"), vec![]);
    assert_eq!(p.finish(), vec![]);
    assert_eq!(p.calls(), 1);
    // A body that can no longer be JSON is released before its end marker arrives.
    let mut p = ToolCallParser::new(ToolCallFormat::Hermes);
    assert_eq!(p.push("<tool_call>\nhello"), vec![ToolOutput::Content("<tool_call>\nhello".into())]);
}

#[test]
fn max_calls_drops_later_calls() {
    let text = "<tool_call>{\"name\": \"a\"}</tool_call><tool_call>{\"name\": \"b\"}</tool_call>";
    let mut p = ToolCallParser::new(ToolCallFormat::Hermes).with_max_calls(1);
    let mut items = p.push(text);
    items.extend(p.finish());
    assert_eq!(items, vec![ToolOutput::Call(call("a", "{}"))]);
    assert_eq!(p.calls(), 2);
}

#[test]
fn llama3_json_calls() {
    let f = ToolCallFormat::Llama3Json;
    let text = format!("{{\"name\": \"get_current_weather\", \"parameters\": {WEATHER}}}");
    check_splits(f, &text, &parsed("", vec![call("get_current_weather", WEATHER_COMPACT)]));
    let text = format!(
        "<|python_tag|>{{\"name\": \"w\", \"parameters\": {WEATHER}}}; {{\"name\": \"now\", \"parameters\": {{}}}}"
    );
    check_splits(f, &text, &parsed("", vec![call("w", WEATHER_COMPACT), call("now", "{}")]));
    let text = "\n {\"name\": \"w\", \"arguments\": {\"a\": 1}}\nThat is the call.";
    check_splits(f, text, &parsed("That is the call.", vec![call("w", r#"{"a":1}"#)]));
    let text = "Calling now.<|python_tag|>{\"name\": \"w\", \"parameters\": {}}";
    check_splits(f, text, &parsed("Calling now.", vec![call("w", "{}")]));
}

#[test]
fn llama3_non_calls_stay_content() {
    let f = ToolCallFormat::Llama3Json;
    for text in [
        "{\"answer\": 42}",
        "{\"answer\": 42} and more",
        "{\"name\": \"f\", \"parameters\": [1]}",
        "{not json at all}",
        "{\"name\": \"f\", \"param",
        "Use {\"name\": \"f\", \"parameters\": {}} like this",
        "<|python_tag|",
        "<|python_tag|>oops",
    ] {
        let want = if text == "<|python_tag|>oops" { "oops" } else { text };
        check_splits(f, text, &parsed(want, vec![]));
    }
}

#[test]
fn mistral_json_array() {
    let f = ToolCallFormat::MistralJson;
    let text = format!("[TOOL_CALLS] [{{\"name\": \"w\", \"arguments\": {WEATHER}, \"id\": \"a1B2c3D4e\"}}, {{\"name\": \"now\", \"arguments\": {{}}}}]");
    check_splits(f, &text, &parsed("", vec![call("w", WEATHER_COMPACT), call("now", "{}")]));
    let text = "Checking.[TOOL_CALLS][{\"name\": \"w\", \"arguments\": {}}]</s>";
    check_splits(f, text, &parsed("Checking.</s>", vec![call("w", "{}")]));
}

#[test]
fn mistral_name_args() {
    let f = ToolCallFormat::MistralArgs;
    let text = format!("[TOOL_CALLS]get_weather[ARGS]{WEATHER}[TOOL_CALLS]now[ARGS]{{}}");
    check_splits(f, &text, &parsed("", vec![call("get_weather", WEATHER_COMPACT), call("now", "{}")]));
}

#[test]
fn mistral_malformed_stays_content() {
    for f in [ToolCallFormat::MistralJson, ToolCallFormat::MistralArgs] {
        for text in [
            "[TOOL_CALLS] [{\"name\": \"w\", \"arguments\": }]",
            "[TOOL_CALLS] []",
            "[TOOL_CALLS] [{\"arguments\": {}}]",
            "[TOOL_CALLS] Sure, here it is",
            "[TOOL_CALLS]get weather[ARGS]{}",
            "[TOOL_CALLS]w[ARGS][1]",
            "[TOOL_CALLS]w[ARGS]{\"a\": ",
            "[TOOL_CALLS]w[AR",
            "[TOOL_CALLS]",
            "[TOOL_CALL",
        ] {
            check_splits(f, text, &parsed(text, vec![]));
        }
    }
}

#[test]
fn arbitrary_input_never_panics() {
    let pieces = [
        "<tool_call>",
        "</tool_call>",
        "[TOOL_CALLS]",
        "[ARGS]",
        "<|python_tag|>",
        "{",
        "}",
        "[",
        "]",
        "\"",
        "é",
        "🔎",
        " ",
        ";",
        "\n",
        "name",
        ":",
        "\\",
    ];
    let mut seed = 0x2545_f491_u64;
    for _ in 0..300 {
        let mut text = String::new();
        for _ in 0..12 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            text.push_str(pieces[(seed % pieces.len() as u64) as usize]);
        }
        for f in [ToolCallFormat::Hermes, ToolCallFormat::Llama3Json, ToolCallFormat::MistralJson] {
            let whole = parse(f, &text);
            let chars: Vec<String> = text.chars().map(String::from).collect();
            let chars: Vec<&str> = chars.iter().map(String::as_str).collect();
            assert_eq!(stream(f, &chars), whole, "{f:?} {text:?}");
        }
    }
}

#[test]
fn detect_from_markers() {
    assert_eq!(ToolCallFormat::detect("{{- '<tool_call>\\n' }}"), Some(ToolCallFormat::Hermes));
    assert_eq!(ToolCallFormat::detect("{{- \"[TOOL_CALLS] [\" }}"), Some(ToolCallFormat::MistralJson));
    assert_eq!(ToolCallFormat::detect("[TOOL_CALLS]{{ name }}[ARGS]"), Some(ToolCallFormat::MistralArgs));
    assert_eq!(ToolCallFormat::detect("{{ '<|python_tag|>' }}"), Some(ToolCallFormat::Llama3Json));
    assert_eq!(ToolCallFormat::detect("{{ '<|im_start|>' }}"), None);
    assert!(ToolCallFormat::MistralJson.is_mistral() && ToolCallFormat::MistralArgs.is_mistral());
    assert!(!ToolCallFormat::Hermes.is_mistral() && !ToolCallFormat::Llama3Json.is_mistral());
}

fn weather_tool() -> serde_json::Value {
    json!({"type": "function", "function": {"name": "get_weather", "description": "d",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}})
}

const WEATHER_SCHEMA: &str = r#"{"type":"object","properties":{"name":{"const":"get_weather"},"arguments":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}},"required":["name","arguments"],"additionalProperties":false}"#;

#[test]
fn hermes_grammar_named_and_required() {
    let tools = [weather_tool(), json!({"type": "function", "function": {"name": "now"}})];
    let g = lark_grammar(ToolCallFormat::Hermes, &tools, ForcedChoice::Named("get_weather"), false).unwrap();
    let want = format!(
        "start: tool_call\ntool_call: \"<tool_call>\\n\" call \"\\n</tool_call>\"\ncall: %json {WEATHER_SCHEMA}\n"
    );
    assert_eq!(g, want);
    let g = lark_grammar(ToolCallFormat::Hermes, &tools, ForcedChoice::Required, true).unwrap();
    let now = r#"{"type":"object","properties":{"name":{"const":"now"},"arguments":{"type":"object"}},"required":["name","arguments"],"additionalProperties":false}"#;
    let want = format!(
        "start: tool_call (\"\\n\" tool_call)*\ntool_call: \"<tool_call>\\n\" call \"\\n</tool_call>\"\ncall: %json {{\"anyOf\":[{WEATHER_SCHEMA},{now}]}}\n"
    );
    assert_eq!(g, want);
}

#[test]
fn other_format_grammars() {
    let tools = [weather_tool()];
    let one = ForcedChoice::Required;
    let llama_schema = WEATHER_SCHEMA.replace("\"arguments\"", "\"parameters\"");
    assert_eq!(
        lark_grammar(ToolCallFormat::Llama3Json, &tools, one, true).unwrap(),
        format!("start: call (\"; \" call)*\ncall: %json {llama_schema}\n")
    );
    assert_eq!(
        lark_grammar(ToolCallFormat::MistralJson, &tools, one, false).unwrap(),
        format!("start: \"[TOOL_CALLS] [\" call \"]\"\ncall: %json {WEATHER_SCHEMA}\n")
    );
    assert_eq!(
        lark_grammar(ToolCallFormat::MistralArgs, &tools, one, true).unwrap(),
        "start: tool_call+\ntool_call: \"[TOOL_CALLS]\" call\ncall: \"get_weather\" \"[ARGS]\" args_0\n\
         args_0: %json {\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}\n"
    );
}

#[test]
fn grammar_errors() {
    let tools = [weather_tool()];
    let err = lark_grammar(ToolCallFormat::Hermes, &tools, ForcedChoice::Named("nope"), false).unwrap_err();
    assert!(err.to_string().contains("\"nope\""), "{err}");
    assert!(lark_grammar(ToolCallFormat::Hermes, &[], ForcedChoice::Required, false).is_err());
    let bad = [json!({"type": "function", "function": {"name": "f", "parameters": [1]}})];
    assert!(lark_grammar(ToolCallFormat::Hermes, &bad, ForcedChoice::Required, false).is_err());
}
