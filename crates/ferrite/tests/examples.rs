//! The examples in `examples/`, run on the real SmolLM2 file (embed: all-MiniLM-L6-v2).

#![allow(clippy::unwrap_used)]

use ferrite_tensor::model_files::{test_model, MINILM, SMOLLM2};

#[path = "../examples/chat.rs"]
mod chat;
#[path = "../examples/embed.rs"]
mod embed;
#[path = "../examples/logits_processor.rs"]
mod logits_processor;
#[path = "../examples/stream.rs"]
mod stream;

/// One test: the examples read `FERRITE_EXAMPLE_MODEL`, and tests of one binary share the
/// environment.
#[test]
fn examples_run() {
    let Some(path) = test_model(SMOLLM2) else { return };
    std::env::set_var("FERRITE_EXAMPLE_MODEL", path);
    chat::main().unwrap();
    stream::main().unwrap();
    logits_processor::main().unwrap();
    let Some(path) = test_model(MINILM) else { return };
    std::env::set_var("FERRITE_EXAMPLE_EMBED_MODEL", path);
    embed::main().unwrap();
}
