//! The examples in `examples/`, run on the real SmolLM2 file (embed: all-MiniLM-L6-v2; tool
//! call: Qwen2.5-Coder; image: the tiny random FLUX pipeline committed in ferrite-models).

#![allow(clippy::unwrap_used)]

use ferrite_tensor::model_files::{test_model, MINILM, QWEN25, SMOLLM2};

#[path = "../examples/chat.rs"]
mod chat;
#[path = "../examples/embed.rs"]
mod embed;
#[path = "../examples/image.rs"]
mod image;
#[path = "../examples/json_schema.rs"]
mod json_schema;
#[path = "../examples/logits_processor.rs"]
mod logits_processor;
#[path = "../examples/stream.rs"]
mod stream;
#[path = "../examples/tool_call.rs"]
mod tool_call;

/// One test: the examples read `FERRITE_EXAMPLE_MODEL`, and tests of one binary share the
/// environment.
#[test]
fn examples_run() {
    let Some(path) = test_model(SMOLLM2) else { return };
    std::env::set_var("FERRITE_EXAMPLE_MODEL", path);
    chat::main().unwrap();
    stream::main().unwrap();
    logits_processor::main().unwrap();
    json_schema::main().unwrap();
    let tiny_flux = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ferrite-models/tests/fixtures/tiny-flux");
    std::env::set_var("FERRITE_EXAMPLE_IMAGE_MODEL", tiny_flux);
    image::main().unwrap();
    let Some(path) = test_model(QWEN25) else { return };
    std::env::set_var("FERRITE_EXAMPLE_TOOL_MODEL", path);
    tool_call::main().unwrap();
    let Some(path) = test_model(MINILM) else { return };
    std::env::set_var("FERRITE_EXAMPLE_EMBED_MODEL", path);
    embed::main().unwrap();
}
