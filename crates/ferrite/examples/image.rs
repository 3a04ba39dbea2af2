//! Text to image with a diffusers FLUX folder named by `FERRITE_EXAMPLE_IMAGE_MODEL` (e.g.
//! FLUX.1-schnell); writes `ferrite-example.png` into the system's temporary folder.
//!
//! `FERRITE_EXAMPLE_IMAGE_MODEL=/path/to/FLUX.1-schnell cargo run --release -p ferrite --example image`

use ferrite::{Engine, ImageGenerationRequest};

#[tokio::main(flavor = "current_thread")]
pub async fn main() -> Result<(), ferrite::Error> {
    let model = std::env::var("FERRITE_EXAMPLE_IMAGE_MODEL")
        .map_err(|_| ferrite::Error::Load("set FERRITE_EXAMPLE_IMAGE_MODEL to a diffusers FLUX folder".into()))?;
    let engine = Engine::builder().model(model).build()?;
    let req =
        ImageGenerationRequest::new("a lighthouse on a cliff at dusk").size(64, 64).seed(7).num_inference_steps(2);
    let answer = engine.generate_images_with_progress(req, |done, total| eprintln!("step {done}/{total}")).await?;
    let png = answer.data[0].png().ok_or_else(|| ferrite::Error::Internal("malformed base64".into()))?;
    let path = std::env::temp_dir().join("ferrite-example.png");
    std::fs::write(&path, &png).map_err(|e| ferrite::Error::Internal(format!("{}: {e}", path.display())))?;
    println!("{} ({} bytes)", path.display(), png.len());
    Ok(())
}
