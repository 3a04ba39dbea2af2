//! Unit tests of [`ChatTemplate`]: errors, the ChatML fallback, the Python-compatible builtins.

use serde_json::{json, Value};

use super::*;
use crate::tokenizer::{GgufVocab, TokenType, VocabKind};

fn render(source: &str, messages: Value) -> Result<String> {
    let messages = messages.as_array().cloned().unwrap_or_default();
    ChatTemplate::new(source, "<s>", "</s>")?.render(&messages, None, false)
}

fn user(text: &str) -> Value {
    json!({"role": "user", "content": text})
}

/// A four-token SentencePiece vocabulary: `<unk>`, `<s>` (BOS), `</s>` (EOS), `a`.
fn tiny_tokenizer() -> Tokenizer {
    let tokens: Vec<String> = ["<unk>", "<s>", "</s>", "a"].iter().map(|s| s.to_string()).collect();
    Tokenizer::from_gguf_vocab(GgufVocab {
        kind: VocabKind::SentencePiece,
        pre: None,
        token_types: vec![TokenType::Unknown, TokenType::Control, TokenType::Control, TokenType::Normal],
        scores: vec![0.0; tokens.len()],
        tokens,
        merges: Vec::new(),
        bos_id: Some(1),
        eos_id: Some(2),
        eot_id: None,
        eom_id: None,
        unk_id: Some(0),
        pad_id: None,
        add_bos: None,
        add_eos: None,
        add_space_prefix: None,
    })
    .unwrap()
}

#[test]
fn raise_exception_is_a_template_error_with_its_message() {
    let src = "{% for m in messages %}{% if m.role not in ['user', 'assistant'] %}\
               {{ raise_exception('Conversation roles must be user/assistant; got ' + m.role) }}\
               {% endif %}{{ m.content }}{% endfor %}";
    match render(src, json!([user("hi"), {"role": "critic", "content": "x"}])) {
        Err(Error::Template(msg)) => assert_eq!(msg, "Conversation roles must be user/assistant; got critic"),
        other => panic!("want Error::Template, got {other:?}"),
    }
    // From inside a macro, too.
    let src = "{% macro check(m) %}{{ raise_exception('bad: ' ~ m) }}{% endmacro %}{{ check(messages|length) }}";
    assert!(matches!(render(src, json!([])), Err(Error::Template(m)) if m == "bad: 0"));
    assert_eq!(render("{% if false %}{{ raise_exception('no') }}{% endif %}ok", json!([])).unwrap(), "ok");
}

#[test]
fn bad_templates_are_errors_not_panics() {
    for src in [
        "{% for m in messages %}",
        "{{ 1 + }}",
        "{% endfor %}",
        "{% generation %}",
        "{{ messages[0].content.nope() }}",
        "{{ 'a' + messages[0].content }}",
        "{{ messages | tojson(indent='x', bad=1) }}",
        "{{ undefined_thing.attr }}",
        "{{ messages[0]['content'] | tojson(separators=[1]) }}",
        "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
        "{{ messages | tojson(indent=1000000000000) }}",
        "{{ range(1000000000) | length }}",
    ] {
        let result = render(src, json!([{"role": "user", "content": null}]));
        assert!(matches!(result, Err(Error::Template(_))), "{src:?} gave {result:?}");
    }
    let err = ChatTemplate::new("{% if %}", "", "").unwrap_err();
    assert!(err.to_string().starts_with("chat template: "), "{err}");
}

#[test]
fn chatml_fallback_output() {
    let t = ChatTemplate::chatml();
    let messages = [
        json!({"role": "system", "content": "Be brief."}),
        user("Hi!"),
        json!({"role": "assistant", "content": null, "tool_calls": []}),
        json!({"role": "user", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]}),
    ];
    assert_eq!(
        t.render(&messages, None, true).unwrap(),
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n\
         <|im_start|>assistant\n<|im_end|>\n<|im_start|>user\none\ntwo<|im_end|>\n<|im_start|>assistant\n"
    );
    assert_eq!(t.render(&messages[1..2], None, false).unwrap(), "<|im_start|>user\nHi!<|im_end|>\n");
    assert_eq!(t.render(&[], None, false).unwrap(), "");
    assert_eq!(t.source(), CHATML_SOURCE);
}

#[test]
fn python_printing_and_methods() {
    let src = "{{ none }}|{{ true }}|{{ 1.0 }}|{{ messages[0] }}|{{ ' x '.strip() }}|{{ 'a,b'.split(',') }}|\
               {{ messages[0].get('missing', 'dflt') }}|{% for k, v in messages[0].items() %}{{ k }}={{ v }};{% endfor %}|\
               {{ 'Hi'.upper() }}{{ 'abc'.startswith('ab') }}";
    assert_eq!(
        render(src, json!([{"role": "user", "content": "it's"}])).unwrap(),
        "None|True|1.0|{'role': 'user', 'content': \"it's\"}|x|['a', 'b']|dflt|role=user;content=it's;|HITrue"
    );
}

#[test]
fn iterable_test_is_python_iter() {
    // Jinja2 checks `iter(x)`: strings, lists and mappings are iterable, `None` and numbers not;
    // an undefined value iterates as empty.
    let src = "{{ none is iterable }}{{ 3 is iterable }}{{ 'ab' is iterable }}{{ [1] is iterable }}\
               {{ messages[0] is iterable }}{{ missing is iterable }}";
    assert_eq!(render(src, json!([{"role": "user"}])).unwrap(), "FalseFalseTrueTrueTrueTrue");
}

#[test]
fn tojson_is_python_json_dumps() {
    let tools =
        [json!({"type": "function", "function": {"name": "f", "parameters": {"type": "object", "b": "é<&>'"}}})];
    let t = ChatTemplate::new(
        "{% for t in tools %}{{ t | tojson }}\n{{ t.function | tojson(indent=2) }}{% endfor %}",
        "",
        "",
    )
    .unwrap();
    assert_eq!(
        t.render(&[], Some(&tools), false).unwrap(),
        "{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": {\"type\": \"object\", \"b\": \"é<&>'\"}}}\n\
         {\n  \"name\": \"f\",\n  \"parameters\": {\n    \"type\": \"object\",\n    \"b\": \"é<&>'\"\n  }\n}"
    );
    assert_eq!(
        render("{{ {'b': 1, 'a': [1.5, none]} | tojson(sort_keys=true) }}", json!([])).unwrap(),
        "{\"a\": [1.5, null], \"b\": 1}"
    );
    assert_eq!(render("{{ 'é' | tojson(true) }}", json!([])).unwrap(), "\"\\u00e9\"");
}

#[test]
fn tools_is_none_without_tools() {
    let src = "{{ tools is none }} {{ tools is defined }} {{ documents is none }} {{ bos_token }}{{ eos_token }}";
    assert_eq!(render(src, json!([])).unwrap(), "True True True <s></s>");
}

#[test]
fn strftime_now_and_extras() {
    let t = ChatTemplate::new("{{ strftime_now('%d %b %Y') }} {{ enable_thinking }}", "", "")
        .unwrap()
        .with_fixed_time(1_796_025_909);
    let extra: Map<String, Value> = [("enable_thinking".to_owned(), json!(false))].into_iter().collect();
    assert_eq!(t.render_with(&[], None, false, Some(&extra)).unwrap(), "30 Nov 2026 False");
    let live = ChatTemplate::new("{{ strftime_now('%Y') }}", "", "").unwrap().render(&[], None, false).unwrap();
    assert_eq!(live.len(), 4);
}

#[test]
fn jinja2_statements() {
    let src = "{%- set ns = namespace(n=0) %}\n{%- for m in messages %}\n  {%- if loop.index0 == 2 %}{% break %}{% endif %}\n  \
               {%- set ns.n = ns.n + 1 %}\n  {{- m.content }}{% if not loop.last %},{% endif %}\n{%- endfor %}\n{{ ns.n }}\n";
    assert_eq!(render(src, json!([user("a"), user("b"), user("c")])).unwrap(), "a,b,2");
    // trim_blocks and lstrip_blocks; the trailing newline is dropped.
    assert_eq!(render("  {% if true %}\nx\n  {% endif %}\ny\n", json!([])).unwrap(), "x\ny");
    // transformers' `{% generation %}` block renders its body.
    assert_eq!(render("{% generation %}g{% endgeneration %}", json!([])).unwrap(), "g");
}

#[test]
fn from_tokenizer_config_forms() {
    let dir = std::env::temp_dir().join(format!("ferrite-template-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tok = tiny_tokenizer();
    let cfg = dir.join("tokenizer_config.json");
    let load = |config: Value| {
        std::fs::write(&cfg, config.to_string()).unwrap();
        ChatTemplate::from_tokenizer_config(&cfg, &tok)
    };

    let t = load(json!({"chat_template": "{{ bos_token }}|{{ eos_token }}"})).unwrap().unwrap();
    assert_eq!(t.render(&[], None, false).unwrap(), "<s>|</s>");
    let t = load(json!({"bos_token": {"content": "[B]"}, "eos_token": "[E]", "chat_template": [
        {"name": "tool_use", "template": "tools"}, {"name": "default", "template": "{{ bos_token }}{{ eos_token }}"}]}))
    .unwrap()
    .unwrap();
    assert_eq!(t.render(&[], None, false).unwrap(), "[B][E]");
    // Declared tools pick the `tool_use` template, as transformers does.
    assert_eq!(t.render(&[], Some(&[json!({"type": "function"})]), false).unwrap(), "tools");
    assert_eq!(t.tools_source(), "tools");
    assert_eq!(t.source(), "{{ bos_token }}{{ eos_token }}");
    assert!(load(json!({"chat_template": [{"name": "rag", "template": "x"}]})).is_err());
    assert!(load(json!({"chat_template": 3})).is_err());
    assert!(load(json!({"bos_token": "<s>"})).unwrap().is_none());
    std::fs::write(dir.join("chat_template.jinja"), "from file").unwrap();
    assert_eq!(load(json!({})).unwrap().unwrap().source(), "from file");
    assert!(ChatTemplate::from_tokenizer_config(&dir.join("missing.json"), &tok).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ChatTemplate>();
}
