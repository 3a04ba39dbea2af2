//! A custom logits processor: this one bans every token that contains the letter `e`, a
//! lipogram.
//!
//! `cargo run --release -p ferrite --example logits_processor`

use ferrite::{ChatCompletionRequest, ChatMessage, Engine, LogitsProcessor, RequestOptions};

/// Sets the logits of the banned tokens to minus infinity.
struct Ban {
    banned: Vec<u32>,
}

impl LogitsProcessor for Ban {
    fn process(&mut self, _generated: &[u32], logits: &mut [f32]) {
        for &t in &self.banned {
            logits[t as usize] = f32::NEG_INFINITY;
        }
    }
}

pub fn main() -> Result<(), ferrite::Error> {
    let model = std::env::var("FERRITE_EXAMPLE_MODEL").unwrap_or_else(|_| "smollm2".into());
    let engine = ferrite::blocking::Engine::new(Engine::builder().model(model).build()?);
    let tok = engine.0.tokenizer().ok_or_else(|| ferrite::Error::Load("this example needs a text model".into()))?;
    let banned: Vec<u32> = (0..tok.vocab_size() as u32)
        .filter(|&id| tok.token_to_piece(id, false).is_ok_and(|p| p.iter().any(|b| b.eq_ignore_ascii_case(&b'e'))))
        .collect();
    let options = RequestOptions::new().logits_processor(move || Ban { banned: banned.clone() });
    let req =
        ChatCompletionRequest::new("smollm2", [ChatMessage::user("Describe a cat.")]).max_tokens(32).temperature(0.0);
    let text = engine.chat_with(req, options)?.choices[0].message.content.clone().unwrap_or_default();
    assert!(!text.to_lowercase().contains('e'), "{text}");
    println!("{text}");
    Ok(())
}
