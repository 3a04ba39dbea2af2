//! A streamed chat: text is printed as it is generated.
//!
//! `cargo run --release -p ferrite --example stream`

use std::io::Write;

use ferrite::{ChatCompletionRequest, ChatMessage, Engine};
use futures_util::StreamExt;

#[tokio::main(flavor = "current_thread")]
pub async fn main() -> Result<(), ferrite::Error> {
    let model = std::env::var("FERRITE_EXAMPLE_MODEL").unwrap_or_else(|_| "smollm2".into());
    let engine = Engine::builder().model(model).build()?;
    let req = ChatCompletionRequest::new("smollm2", [ChatMessage::user("Write a haiku about rust.")]).max_tokens(48);
    let mut stream = engine.chat_stream(req)?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if let Some(text) = chunk.choices.first().and_then(|c| c.delta.content.as_deref()) {
            print!("{text}");
            let _ = std::io::stdout().flush();
        }
        if let Some(usage) = chunk.usage {
            println!("\n({} completion tokens)", usage.completion_tokens);
        }
    }
    Ok(())
}
