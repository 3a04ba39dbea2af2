//! Golden tests: our GGUF tokenizers against llama.cpp's `llama-tokenize`, id for id.
//!
//! The expected ids in `tests/golden/tokens_<model>.json` come from `scripts/golden_tokens.py`
//! (llama.cpp, special tokens parsed, with and without BOS) on the strings of
//! `tests/golden/strings.json`. Every string must also round-trip through `decode`, through the
//! concatenated `token_to_piece` bytes and through the `StreamDecoder`.

#![allow(clippy::unwrap_used)]

use ferrite_chat::Tokenizer;
use ferrite_tensor::gguf::GgufFile;
use ferrite_tensor::model_files::{test_model, GEMMA3, QWEN25, SMOLLM2};
use serde::Deserialize;

#[derive(Deserialize)]
struct Golden {
    model: String,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    text: String,
    with_bos: Vec<u32>,
    no_bos: Vec<u32>,
}

fn load(model: &str) -> Option<Tokenizer> {
    let path = test_model(model)?;
    let gguf = GgufFile::open(&path).expect("open GGUF");
    Some(Tokenizer::from_gguf(&gguf).expect("tokenizer from GGUF"))
}

/// Every way a case can disagree with llama.cpp or fail to round-trip, as readable lines.
///
/// In a SentencePiece vocabulary a literal `▁` in the text is the space marker itself, so it
/// decodes as a space (llama.cpp's detokenizer does the same): `spm` accounts for that.
fn check_case(tok: &Tokenizer, case: &Case, spm: bool) -> Vec<String> {
    let mut bad = Vec::new();
    let name = &case.name;
    let text = if spm { case.text.replace('\u{2581}', " ") } else { case.text.clone() };
    let with_bos = tok.encode(&case.text, true).expect("encode");
    if with_bos != case.with_bos {
        bad.push(format!("{name}: with BOS: ours {with_bos:?}, llama.cpp {:?}", case.with_bos));
    }
    let no_bos = tok.encode(&case.text, false).expect("encode");
    if no_bos != case.no_bos {
        bad.push(format!("{name}: no BOS: ours {no_bos:?}, llama.cpp {:?}", case.no_bos));
    }
    let decoded = tok.decode(&case.no_bos, false).expect("decode");
    if decoded != text {
        bad.push(format!("{name}: decode gives {decoded:?}, want {text:?}"));
    }
    let pieces: Vec<u8> =
        case.no_bos.iter().flat_map(|&id| tok.token_to_piece(id, true).expect("piece").to_vec()).collect();
    if pieces != text.as_bytes() {
        bad.push(format!("{name}: pieces give {:?}", String::from_utf8_lossy(&pieces)));
    }
    let mut stream = tok.stream_decoder(false);
    let mut streamed = String::new();
    for &id in &case.no_bos {
        streamed.push_str(&stream.push(id).expect("stream"));
    }
    streamed.push_str(&stream.finish());
    if streamed != text {
        bad.push(format!("{name}: stream gives {streamed:?}"));
    }
    bad
}

fn check_model(model: &str, golden_json: &str, spm: bool) {
    let Some(tok) = load(model) else { return };
    let golden: Golden = serde_json::from_str(golden_json).expect("golden JSON");
    assert_eq!(golden.model, model, "golden file is for another model");
    assert!(golden.cases.len() >= 40, "golden file has only {} cases", golden.cases.len());
    let bad: Vec<String> = golden.cases.iter().flat_map(|c| check_case(&tok, c, spm)).collect();
    assert!(bad.is_empty(), "{model}: {} mismatches:\n{}", bad.len(), bad.join("\n"));
}

#[test]
fn smollm2_matches_llama_cpp() {
    check_model(SMOLLM2, include_str!("golden/tokens_smollm2.json"), false);
}

#[test]
fn qwen25_matches_llama_cpp() {
    check_model(QWEN25, include_str!("golden/tokens_qwen25.json"), false);
}

#[test]
fn gemma3_matches_llama_cpp() {
    check_model(GEMMA3, include_str!("golden/tokens_gemma3.json"), true);
}

#[test]
fn smollm2_capital_of_france() {
    let Some(tok) = load(SMOLLM2) else { return };
    assert_eq!(tok.encode("The capital of France is", true).expect("encode"), vec![504, 3575, 282, 4649, 314]);
}

#[test]
fn smollm2_special_tokens() {
    let Some(tok) = load(SMOLLM2) else { return };
    assert_eq!(tok.vocab_size(), 49152);
    assert_eq!((tok.bos_id(), tok.eos_id()), (Some(1), Some(2)));
    assert!(!tok.add_bos());
    assert!(tok.is_eog(2) && tok.is_eog(0), "<|im_end|> and <|endoftext|> end generation");
    assert!(!tok.is_eog(1));
    assert_eq!(tok.token_str(2).as_deref(), Some("<|im_end|>"));
    assert_eq!(tok.decode(&[1, 4093, 198, 6004, 2], true).expect("decode"), "user\nhi");
    assert_eq!(tok.token_to_piece(2, false).expect("piece"), b"");
    assert_eq!(tok.token_to_piece(2, true).expect("piece"), b"<|im_end|>");
    assert!(tok.decode(&[49152], false).is_err());
}

#[test]
fn qwen25_special_tokens() {
    let Some(tok) = load(QWEN25) else { return };
    assert_eq!(tok.eos_id(), Some(151645));
    assert!(tok.is_eog(151645) && tok.is_eog(151643));
    assert!(!tok.add_bos());
    assert_eq!(tok.token_id("<tool_call>"), Some(151657));
}

#[test]
fn gemma3_special_tokens() {
    let Some(tok) = load(GEMMA3) else { return };
    assert_eq!(tok.vocab_size(), 262_144);
    assert_eq!((tok.bos_id(), tok.eos_id()), (Some(2), Some(1)));
    assert!(tok.add_bos());
    assert_eq!(tok.eot_id(), Some(106));
    assert!(tok.is_eog(1) && tok.is_eog(106), "<eos> and <end_of_turn> end generation");
    // A byte-fallback token is one raw byte.
    let nl = tok.token_id("<0x0A>").expect("byte token");
    assert_eq!(tok.token_to_piece(nl, false).expect("piece"), b"\n");
}
