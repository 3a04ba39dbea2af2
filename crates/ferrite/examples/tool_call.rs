//! A tool call: the model asks for `get_current_weather`, the program answers with the tool's
//! result, and the model turns it into a reply. Qwen2.5-Coder-0.5B-Instruct (a built-in model,
//! fetched on first use; its chat template knows tools), or the model named by
//! `FERRITE_EXAMPLE_TOOL_MODEL`.
//!
//! `cargo run --release -p ferrite --example tool_call`

use ferrite::{ChatCompletionRequest, ChatMessage, Engine, Tool};
use serde_json::json;

#[tokio::main(flavor = "current_thread")]
pub async fn main() -> Result<(), ferrite::Error> {
    let model = std::env::var("FERRITE_EXAMPLE_TOOL_MODEL").unwrap_or_else(|_| "qwen2.5-coder".into());
    let engine = Engine::builder().model(model).build()?;
    let weather = Tool::function(
        "get_current_weather",
        "Get the current weather in a given location",
        json!({
            "type": "object",
            "properties": {"location": {"type": "string", "description": "The city, e.g. Paris"}},
            "required": ["location"]
        }),
    );
    let mut messages = vec![ChatMessage::user("What is the weather like in Paris today?")];
    let request = |messages: Vec<ChatMessage>| {
        ChatCompletionRequest::new("qwen", messages).tools([weather.clone()]).max_tokens(96).temperature(0.0)
    };
    let first = engine.chat(request(messages.clone())).await?;
    let calls = first.choices[0].message.tool_calls.clone().unwrap_or_default();
    for call in &calls {
        println!("the model calls {}({})", call.function.name, call.function.arguments);
    }
    messages.push(ChatMessage::assistant_tool_calls(calls.clone()));
    for call in &calls {
        // Here a real program would look the weather up.
        messages.push(ChatMessage::tool(call.id.clone(), json!({"temperature": 21, "unit": "celsius"}).to_string()));
    }
    let answer = engine.chat(request(messages)).await?;
    println!("{}", answer.choices[0].message.content.as_deref().unwrap_or_default());
    Ok(())
}
