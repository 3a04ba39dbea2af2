//! Chats with the model given as the first argument through ferrite's blocking API.

use ferrite::{ChatCompletionRequest, ChatMessage, Engine};

fn main() -> Result<(), ferrite::Error> {
    let model = std::env::args().nth(1).unwrap_or_else(|| "smollm2".into());
    let engine = ferrite::blocking::Engine::new(Engine::builder().model(model).threads(2).kv_cache_mb(32).build()?);
    let req = ChatCompletionRequest::new("smollm2", [ChatMessage::system("You are a helpful assistant."), ChatMessage::user("What is the capital of France?")])
        .max_tokens(16)
        .temperature(0.0);
    let answer = engine.chat(req)?;
    println!("{}", answer.choices[0].message.content.as_deref().unwrap_or_default());
    Ok(())
}
