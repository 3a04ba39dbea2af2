//! A chat with the built-in SmolLM2 model (fetched on first use), or the model named by
//! `FERRITE_EXAMPLE_MODEL` (a path or a built-in name).
//!
//! `cargo run --release -p ferrite --example chat`

use ferrite::{ChatCompletionRequest, ChatMessage, Engine};

#[tokio::main(flavor = "current_thread")]
pub async fn main() -> Result<(), ferrite::Error> {
    let model = std::env::var("FERRITE_EXAMPLE_MODEL").unwrap_or_else(|_| "smollm2".into());
    let engine = Engine::builder().model(model).build()?;
    let req = ChatCompletionRequest::new(
        "smollm2",
        [ChatMessage::system("You are a helpful assistant."), ChatMessage::user("What is the capital of France?")],
    )
    .max_tokens(32)
    .temperature(0.0);
    let answer = engine.chat(req).await?;
    println!("{}", answer.choices[0].message.content.as_deref().unwrap_or_default());
    println!("({} prompt tokens, {} completion tokens)", answer.usage.prompt_tokens, answer.usage.completion_tokens);
    Ok(())
}
