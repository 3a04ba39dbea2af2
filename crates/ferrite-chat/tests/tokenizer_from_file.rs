//! `Tokenizer::from_file` on a Hugging Face `tokenizer.json` (all-MiniLM-L6-v2, WordPiece).

#![allow(clippy::unwrap_used)]

use ferrite_chat::Tokenizer;
use ferrite_tensor::model_files::{test_model, MINILM};

fn minilm() -> Option<Tokenizer> {
    let dir = test_model(MINILM)?;
    let config = dir.join("tokenizer_config.json");
    let config = config.exists().then_some(config);
    Some(Tokenizer::from_file(&dir.join("tokenizer.json"), config.as_deref()).expect("load tokenizer.json"))
}

#[test]
fn minilm_encodes_like_sentence_transformers() {
    let Some(tok) = minilm() else { return };
    let ids = tok.encode("A man is eating food.", true).expect("encode");
    assert_eq!(ids, vec![101, 1037, 2158, 2003, 5983, 2833, 1012, 102]);
    // Without special tokens: no [CLS]/[SEP].
    assert_eq!(tok.encode("A man is eating food.", false).expect("encode"), vec![1037, 2158, 2003, 5983, 2833, 1012]);
}

#[test]
fn minilm_padding_and_truncation_are_off() {
    let Some(tok) = minilm() else { return };
    // The file pads and truncates at 128; our encode must do neither.
    assert_eq!(tok.encode("hi", true).expect("encode").len(), 3);
    let long = "word ".repeat(300);
    assert_eq!(tok.encode(&long, true).expect("encode").len(), 302);
}

#[test]
fn minilm_decodes_and_streams() {
    let Some(tok) = minilm() else { return };
    let ids = tok.encode("A man is eating food.", true).expect("encode");
    assert_eq!(tok.decode(&ids, true).expect("decode"), "a man is eating food.");
    assert_eq!(tok.token_str(101).as_deref(), Some("[CLS]"));
    assert!(tok.is_control(101) && tok.is_control(102));
    assert_eq!(tok.token_to_piece(101, false).expect("piece"), b"");
    assert_eq!(tok.vocab_size(), 30522);
    let sub = tok.encode("tokenization", false).expect("encode");
    let text: Vec<u8> = sub.iter().flat_map(|&id| tok.token_to_piece(id, false).expect("piece").to_vec()).collect();
    assert_eq!(String::from_utf8(text).expect("utf-8"), " tokenization");
}
