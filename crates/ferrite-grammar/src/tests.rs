//! The grammar crate on the real Qwen2.5-Coder GGUF tokenizer (151,936 ids, byte-level BPE,
//! ChatML control tokens).

#![allow(clippy::unwrap_used)]

use std::sync::OnceLock;

use ferrite_chat::Tokenizer;
use ferrite_scheduler::LogitsProcessor;
use ferrite_tensor::gguf::GgufFile;
use ferrite_tensor::model_files::{test_model, QWEN25};
use serde_json::json;

use crate::{Constraint, GrammarError, GrammarProcessor, GrammarVocabulary};

fn qwen() -> Option<&'static (Tokenizer, GrammarVocabulary)> {
    static QWEN: OnceLock<Option<(Tokenizer, GrammarVocabulary)>> = OnceLock::new();
    QWEN.get_or_init(|| {
        let path = test_model(QWEN25)?;
        let tok = Tokenizer::from_gguf(&GgufFile::open(&path).unwrap()).unwrap();
        let vocab = GrammarVocabulary::new(&tok).unwrap();
        Some((tok, vocab))
    })
    .as_ref()
}

fn id(tok: &Tokenizer, text: &str) -> u32 {
    let ids = tok.encode(text, false).unwrap();
    assert_eq!(ids.len(), 1, "{text:?} is not one token: {ids:?}");
    ids[0]
}

/// The logits row after `generated`, masked by `p` (all zeros before masking).
fn masked(p: &mut GrammarProcessor, generated: &[u32], vocab: usize) -> Vec<f32> {
    let mut row = vec![0.0; vocab];
    p.process(generated, &mut row);
    row
}

/// Feeds the tokens of `text` one by one, checking each was allowed; returns the tokens.
fn walk(tok: &Tokenizer, p: &mut GrammarProcessor, text: &str) -> Vec<u32> {
    let ids = tok.encode(text, false).unwrap();
    for (i, &t) in ids.iter().enumerate() {
        let row = masked(p, &ids[..i], tok.vocab_size());
        assert!(row[t as usize].is_finite(), "token {i} ({:?}) of {text:?} masked", tok.token_str(t));
    }
    ids
}

fn finite(row: &[f32]) -> Vec<u32> {
    row.iter().enumerate().filter(|(_, l)| l.is_finite()).map(|(i, _)| i as u32).collect()
}

#[test]
fn vocabulary_covers_the_model_and_its_end_tokens() {
    let Some((tok, vocab)) = qwen() else { return };
    assert_eq!(vocab.vocab_size(), 151_936);
    let im_end = tok.token_id("<|im_end|>").unwrap();
    let eot = tok.token_id("<|endoftext|>").unwrap();
    assert_eq!(vocab.eog_ids()[0], tok.eos_id().unwrap());
    assert!(vocab.eog_ids().contains(&im_end) && vocab.eog_ids().contains(&eot), "{:?}", vocab.eog_ids());
}

#[test]
fn json_object_starts_with_a_brace_and_never_allows_control_tokens() {
    let Some((tok, vocab)) = qwen() else { return };
    let mut p = vocab.processor(&Constraint::JsonObject).unwrap();
    let row = masked(&mut p, &[], tok.vocab_size());
    let allowed = finite(&row);
    assert!(allowed.contains(&id(tok, "{")), "{{ must be allowed first");
    for &t in &allowed {
        let piece = tok.token_to_piece(t, true).unwrap();
        assert_eq!(piece.first(), Some(&b'{'), "token {t} ({:?}) allowed first", tok.token_str(t));
        assert!(!tok.is_control(t));
    }
    for special in ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|fim_prefix|>"] {
        let t = tok.token_id(special).unwrap();
        assert!(row[t as usize] == f32::NEG_INFINITY, "{special} allowed at the start");
    }
}

#[test]
fn json_object_follows_a_document_and_then_allows_only_end_of_generation() {
    let Some((tok, vocab)) = qwen() else { return };
    let mut p = vocab.processor(&Constraint::JsonObject).unwrap();
    let text = r#"{"name": "Ada", "tags": ["x", "y\n"], "n": -1.5e3, "ok": true, "z": null, "o": {}}"#;
    let ids = walk(tok, &mut p, text);
    let row = masked(&mut p, &ids, tok.vocab_size());
    let mut want = vocab.eog_ids().to_vec();
    want.sort_unstable();
    assert_eq!(finite(&row), want);
    assert!(p.is_complete() && p.error().is_none());
}

#[test]
fn json_allows_pretty_printing_but_not_endless_whitespace() {
    let Some((tok, vocab)) = qwen() else { return };
    let mut p = vocab.processor(&Constraint::JsonObject).unwrap();
    let ids = walk(tok, &mut p, "{\n  \"a\": [\n    1,\n    2\n  ]\n}");
    masked(&mut p, &ids, tok.vocab_size());
    assert!(p.is_complete());
    let mut p = vocab.processor(&Constraint::JsonObject).unwrap();
    let ids = walk(tok, &mut p, &format!("{{{}", " ".repeat(crate::MAX_WHITESPACE)));
    let row = masked(&mut p, &ids, tok.vocab_size());
    for t in finite(&row) {
        let piece = tok.token_to_piece(t, true).unwrap();
        assert!(!piece.first().is_some_and(u8::is_ascii_whitespace), "{:?} allowed", tok.token_str(t));
    }
}

#[test]
fn json_object_rejects_what_json_forbids() {
    let Some((tok, vocab)) = qwen() else { return };
    let mut p = vocab.processor(&Constraint::JsonObject).unwrap();
    let ids = walk(tok, &mut p, r#"{"a": 1"#);
    let row = masked(&mut p, &ids, tok.vocab_size());
    for bad in [":", "]", "'"] {
        assert!(row[id(tok, bad) as usize] == f32::NEG_INFINITY, "{bad:?} allowed after {{\"a\": 1");
    }
    assert!(row[id(tok, ",") as usize].is_finite() && row[id(tok, "}") as usize].is_finite());
    // Not complete yet: no end-of-generation token.
    assert!(vocab.eog_ids().iter().all(|&e| row[e as usize] == f32::NEG_INFINITY));
}

#[test]
fn schema_constrains_keys_integers_and_enums() {
    let Some((tok, vocab)) = qwen() else { return };
    let schema = json!({
        "type": "object",
        "properties": {
            "age": {"type": "integer"},
            "color": {"enum": ["red", "green"]}
        },
        "required": ["age", "color"],
        "additionalProperties": false
    });
    let c = Constraint::JsonSchema(schema);
    let mut p = vocab.processor(&c).unwrap();
    let ids = walk(tok, &mut p, r#"{"age": 41, "color": "green"}"#);
    let row = masked(&mut p, &ids, tok.vocab_size());
    assert!(p.is_complete(), "{:?}", finite(&row));

    let mut p = vocab.processor(&c).unwrap();
    let ids = walk(tok, &mut p, r#"{"age": 4"#);
    let row = masked(&mut p, &ids, tok.vocab_size());
    assert!(row[id(tok, ".") as usize] == f32::NEG_INFINITY, "an integer has no decimal point");
    let mut p = vocab.processor(&c).unwrap();
    let ids = walk(tok, &mut p, r#"{"age": 4, "color": ""#);
    let row = masked(&mut p, &ids, tok.vocab_size());
    for t in finite(&row) {
        let piece = String::from_utf8_lossy(tok.token_to_piece(t, true).unwrap()).into_owned();
        assert!("red\"".starts_with(&piece) || "green\"".starts_with(&piece), "{piece:?} allowed in the enum");
    }
}

#[test]
fn invalid_schema_and_grammar_are_errors() {
    let Some((_, vocab)) = qwen() else { return };
    let bad = vocab.processor(&Constraint::JsonSchema(json!({"type": "no-such-type"})));
    assert!(matches!(bad, Err(GrammarError::Invalid(_))), "{bad:?}");
    let bad = vocab.processor(&Constraint::Lark("start: undefined_rule".into()));
    assert!(matches!(bad, Err(GrammarError::Invalid(_))), "{bad:?}");
}

#[test]
fn lark_grammar_embeds_a_json_schema() {
    let Some((tok, vocab)) = qwen() else { return };
    let grammar = r#"
start: "<tool_call>\n" call "\n</tool_call>"
call: %json {
    "type": "object",
    "properties": {"name": {"const": "get_weather"}, "arguments": {"type": "object"}},
    "required": ["name", "arguments"],
    "additionalProperties": false
}
"#;
    let c = Constraint::Lark(grammar.into());
    let mut p = vocab.processor(&c).unwrap();
    let text = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>";
    let ids = walk(tok, &mut p, text);
    masked(&mut p, &ids, tok.vocab_size());
    assert!(p.is_complete());

    let mut p = vocab.processor(&c).unwrap();
    let ids = walk(tok, &mut p, "<tool_call>\n{\"name\": \"");
    let row = masked(&mut p, &ids, tok.vocab_size());
    for t in finite(&row) {
        let piece = String::from_utf8_lossy(tok.token_to_piece(t, true).unwrap()).into_owned();
        assert!("get_weather\"".starts_with(&piece), "{piece:?} allowed as the name");
    }
}

#[test]
fn a_rejected_token_ends_the_choice_without_panicking() {
    let Some((tok, vocab)) = qwen() else { return };
    let mut p = vocab.processor(&Constraint::JsonObject).unwrap();
    masked(&mut p, &[], tok.vocab_size());
    let bad = id(tok, "hello");
    let row = masked(&mut p, &[bad], tok.vocab_size());
    assert!(p.error().is_some());
    let mut want = vocab.eog_ids().to_vec();
    want.sort_unstable();
    assert_eq!(finite(&row), want);
    // A shorter `generated` than consumed is an error too, not a panic.
    let mut p = vocab.processor(&Constraint::JsonObject).unwrap();
    let ids = walk(tok, &mut p, "{\"a\"");
    masked(&mut p, &ids, tok.vocab_size());
    masked(&mut p, &ids[..1], tok.vocab_size());
    assert!(p.error().is_some());
}

#[test]
fn repeated_calls_on_the_same_tokens_do_not_advance_the_grammar() {
    // After a preemption the engine recomputes and samples again with `generated` unchanged.
    let Some((tok, vocab)) = qwen() else { return };
    let mut ps = vocab.processors(&Constraint::JsonObject, 2).unwrap();
    let ids = walk(tok, &mut ps[0], "{\"k\": [1");
    let first = masked(&mut ps[0], &ids, tok.vocab_size());
    let again = masked(&mut ps[0], &ids, tok.vocab_size());
    assert_eq!(finite(&first), finite(&again));
    assert!(ps[0].error().is_none());
    // Choices are independent: the second processor is still at the start.
    let start = masked(&mut ps[1], &[], tok.vocab_size());
    assert!(start[id(tok, "{") as usize].is_finite() && start[id(tok, ",") as usize] == f32::NEG_INFINITY);
}

#[test]
fn logits_past_the_vocabulary_are_masked() {
    let Some((tok, vocab)) = qwen() else { return };
    let mut p = vocab.processor(&Constraint::JsonObject).unwrap();
    let mut row = vec![0.0; tok.vocab_size() + 8];
    p.process(&[], &mut row);
    assert!(row[tok.vocab_size()..].iter().all(|l| *l == f32::NEG_INFINITY));
}
