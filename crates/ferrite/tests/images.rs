//! [`Engine::generate_images`] on the tiny random FLUX pipeline committed at
//! `crates/ferrite-models/tests/fixtures/tiny-flux/`: PNGs of the asked size, the progress
//! callback, the blocking counterpart, and the errors of asking the wrong kind of model.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use common::block_on;
use ferrite::{ChatCompletionRequest, ChatMessage, EmbeddingRequest, Engine, Error, ImageGenerationRequest};

/// The tiny pipeline's folder; `None` (skipped) when it is missing outside CI.
fn tiny_flux() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ferrite-models/tests/fixtures/tiny-flux");
    if dir.join("model_index.json").exists() {
        return Some(dir);
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(!ci, "the tiny FLUX pipeline {} is missing under CI=true", dir.display());
    eprintln!("SKIPPED: the tiny FLUX pipeline {} is missing", dir.display());
    None
}

fn engine() -> Option<&'static Engine> {
    static ENGINE: OnceLock<Option<Engine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| Some(Engine::builder().model(tiny_flux()?.to_string_lossy()).threads(2).build().unwrap()))
        .as_ref()
}

/// Width and height from a PNG's IHDR chunk, after checking the signature.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&png[12..16], b"IHDR");
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&png[16..20]), be(&png[20..24]))
}

#[test]
fn images_of_the_asked_size_with_progress() {
    let Some(engine) = engine() else { return };
    assert!(engine.is_image_model() && !engine.is_embedding_model());
    assert!(engine.tokenizer().is_none());
    let steps = Arc::new(Mutex::new(Vec::new()));
    let seen = steps.clone();
    let req = ImageGenerationRequest::new("a red cube").n(2).size(48, 32).seed(1).num_inference_steps(3);
    let resp = block_on(engine.generate_images_with_progress(req, move |done, total| {
        seen.lock().unwrap().push((done, total));
    }))
    .unwrap();
    assert_eq!(resp.data.len(), 2);
    for d in &resp.data {
        assert_eq!(png_size(&d.png().unwrap()), (48, 32));
        assert_eq!(d.revised_prompt, None);
    }
    assert_eq!(*steps.lock().unwrap(), vec![(1, 3), (2, 3), (3, 3)]);
    assert_eq!(engine.stats().running, 0);
    let blocking = ferrite::blocking::Engine::new(engine.clone());
    let one = blocking.generate_images(ImageGenerationRequest::new("a cube").size(32, 32).num_inference_steps(1));
    assert_eq!(png_size(&one.unwrap().data[0].png().unwrap()), (32, 32));
}

#[test]
fn wrong_requests_are_invalid() {
    let Some(engine) = engine() else { return };
    let invalid = |e: Error, param: &str, says: &str| {
        assert!(
            matches!(&e, Error::InvalidRequest { param: Some(p), message, .. } if p == param && message.contains(says)),
            "{e:?}"
        );
    };
    let e = block_on(engine.generate_images(ImageGenerationRequest::new("a").size(40, 32))).unwrap_err();
    invalid(e, "size", "multiples of 16");
    let mut url = ImageGenerationRequest::new("a");
    url.response_format = Some("url".into());
    invalid(block_on(engine.generate_images(url)).unwrap_err(), "response_format", "only b64_json");
    let e = block_on(engine.chat(ChatCompletionRequest::new("flux", [ChatMessage::user("hi")]))).unwrap_err();
    invalid(e, "model", "does not support chat completions");
    let e = block_on(engine.embed(EmbeddingRequest::new("flux", "hi"))).unwrap_err();
    invalid(e, "model", "does not support embeddings");
}
