//! Output that must follow a JSON schema: constrained decoding makes every token keep the text
//! valid for the schema, so the answer always parses. SmolLM2 (built in), or the model named by
//! `FERRITE_EXAMPLE_MODEL`.
//!
//! `cargo run --release -p ferrite --example json_schema`

use ferrite::{ChatCompletionRequest, ChatMessage, Engine, ResponseFormat};
use serde_json::json;

#[tokio::main(flavor = "current_thread")]
pub async fn main() -> Result<(), ferrite::Error> {
    let model = std::env::var("FERRITE_EXAMPLE_MODEL").unwrap_or_else(|_| "smollm2".into());
    let engine = Engine::builder().model(model).build()?;
    let schema = json!({
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "country": {"type": "string"},
            "population_millions": {"type": "number"}
        },
        "required": ["city", "country", "population_millions"],
        "additionalProperties": false
    });
    let req = ChatCompletionRequest::new("smollm2", [ChatMessage::user("Describe the capital of France as JSON.")])
        .response_format(ResponseFormat::json_schema("city", schema))
        .max_tokens(96)
        .temperature(0.0);
    let answer = engine.chat(req).await?;
    let text = answer.choices[0].message.content.clone().unwrap_or_default();
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| ferrite::Error::Internal(e.to_string()))?;
    println!("{value:#}");
    Ok(())
}
