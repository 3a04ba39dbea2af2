//! `ferrite image`: generate images of a prompt with a diffusers FLUX folder and write PNGs.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use ferrite::ImageGenerationRequest;

use super::step_bar::StepBar;
use super::ModelArgs;

#[derive(Args, Debug)]
pub struct ImageArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// What to draw.
    #[arg(long)]
    pub prompt: String,
    /// WIDTHxHEIGHT in pixels, each a multiple of 16, up to the model's limit.
    #[arg(long, default_value = "512x512")]
    pub size: String,
    /// Denoising steps (default: the model's, 4 for FLUX.1-schnell).
    #[arg(long)]
    pub steps: Option<u32>,
    /// Seed of the initial noise (default: a random one).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Distilled guidance, for models with a guidance embedding (FLUX.1-dev).
    #[arg(long)]
    pub guidance_scale: Option<f32>,
    /// Images to generate (1 to 10, in one batched pass). With more than one, each gets its
    /// number before the extension: -o out.png writes out-1.png, out-2.png, ...
    #[arg(short = 'n', default_value_t = 1)]
    pub n: u32,
    /// The PNG file to write.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
}

pub fn run(a: ImageArgs) -> Result<()> {
    if !(1..=ferrite::MAX_IMAGES).contains(&a.n) {
        bail!("-n must be between 1 and {}, got {}", ferrite::MAX_IMAGES, a.n);
    }
    let engine = ferrite::blocking::Engine::new(a.model.engine().build()?);
    if !engine.0.is_image_model() {
        bail!(
            "{} is not an image model (a diffusers folder whose model_index.json names a FLUX pipeline)",
            a.model.model.display()
        );
    }
    let mut req = ImageGenerationRequest::new(a.prompt).model(engine.0.model_name()).n(a.n);
    req.size = Some(a.size);
    req.seed = a.seed;
    req.num_inference_steps = a.steps;
    req.guidance_scale = a.guidance_scale;
    let mut bar = StepBar::default();
    let resp = engine.generate_images_with_progress(req, move |done, total| bar.step(done, total))?;
    let paths = output_paths(&a.output, resp.data.len());
    for (image, path) in resp.data.iter().zip(&paths) {
        let png = image.png().context("decoding the image's base64")?;
        std::fs::write(path, png).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("ferrite: wrote {}", path.display());
    }
    Ok(())
}

/// `out` for one image; `out-1.png`, `out-2.png`, ... (the number before the extension) for more.
fn output_paths(out: &Path, n: usize) -> Vec<PathBuf> {
    if n == 1 {
        return vec![out.to_path_buf()];
    }
    let stem = out.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let ext = out.extension().map(|e| format!(".{}", e.to_string_lossy())).unwrap_or_default();
    (1..=n).map(|i| out.with_file_name(format!("{stem}-{i}{ext}"))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_images_are_numbered_before_the_extension() {
        assert_eq!(output_paths(Path::new("a/out.png"), 1), [PathBuf::from("a/out.png")]);
        assert_eq!(
            output_paths(Path::new("a/out.png"), 2),
            [PathBuf::from("a/out-1.png"), PathBuf::from("a/out-2.png")]
        );
        assert_eq!(output_paths(Path::new("img"), 2), [PathBuf::from("img-1"), PathBuf::from("img-2")]);
    }
}
