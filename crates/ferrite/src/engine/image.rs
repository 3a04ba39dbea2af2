//! Image models: a FLUX pipeline behind the scheduler's image worker ([`ImageHandle`]),
//! answering [`ImageGenerationRequest`]s with base64 PNGs.

use std::path::Path;
use std::sync::Arc;

use ferrite_models::diffusion::{FluxPipeline, ImageRequest};
use ferrite_scheduler::{CancelFlag, ImageHandle, ImageJob, ImageJobError, ImageProgress, ImageSubmitError};
use ferrite_tensor::Device;

use crate::types::{base64, ImageData, ImageGenerationRequest, ImagesResponse};
use crate::Error;

/// The size of an image when a request does not say, as OpenAI's default.
const DEFAULT_SIDE: usize = 1024;

/// A loaded image model.
pub(crate) struct Imager {
    pub(crate) handle: ImageHandle,
    pipeline: Arc<FluxPipeline>,
    pub(crate) name: String,
}

/// Whether `path` holds a diffusers text-to-image pipeline ferrite runs: a folder whose
/// `model_index.json` names a FLUX pipeline class (`FluxPipeline`).
pub(crate) fn is_image_model(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(path.join("model_index.json")) else { return false };
    let Ok(index) = serde_json::from_str::<serde_json::Value>(&text) else { return false };
    index["_class_name"].as_str().is_some_and(|c| c.starts_with("Flux"))
}

impl Imager {
    /// Loads the folder and starts the workers (`max_concurrent` jobs at once, at most
    /// `max_queue` waiting).
    pub(crate) fn load(
        path: &Path,
        name: String,
        device: &Device,
        max_concurrent: usize,
        max_queue: usize,
    ) -> Result<Imager, Error> {
        let pipeline = FluxPipeline::load(path, device).map_err(|e| Error::Load(format!("{}: {e}", path.display())))?;
        let pipeline = Arc::new(pipeline);
        let handle = ImageHandle::spawn(pipeline.clone(), max_concurrent, max_queue)
            .map_err(|e| Error::Load(format!("starting the image threads: {e}")))?;
        Ok(Imager { handle, pipeline, name })
    }

    /// The pipeline's request for `req`, checked against the model's limits.
    fn request(&self, req: &ImageGenerationRequest) -> Result<ImageRequest, Error> {
        req.validate()?;
        if req.negative_prompt.is_some() {
            let msg = format!(
                "model {} does not support negative_prompt: FLUX has no true classifier-free guidance",
                self.name
            );
            return Err(Error::invalid("negative_prompt", msg));
        }
        let max = self.pipeline.max_pixels();
        let (width, height) = match req.dimensions()? {
            Some((w, h)) if w * h > max => {
                let msg = format!("size {w}x{h} is too large: model {} takes at most {max} pixels", self.name);
                return Err(Error::invalid("size", msg));
            }
            Some(wh) => wh,
            None => {
                let side = default_side(max);
                (side, side)
            }
        };
        let ir = ImageRequest {
            prompt: req.prompt.clone(),
            negative_prompt: req.negative_prompt.clone(),
            width,
            height,
            n: req.n.unwrap_or(1) as usize,
            steps: req.num_inference_steps.map(|s| s as usize),
            guidance_scale: req.guidance_scale,
            seed: req.seed,
        };
        self.pipeline.validate(&ir).map_err(|e| Error::invalid(e.field, e.message))?;
        Ok(ir)
    }

    /// Runs `req` on the image worker. Dropping the future (a client that went away) cancels the
    /// job: a waiting one is dropped, a running one stops after its current step.
    pub(crate) async fn generate(
        &self,
        req: ImageGenerationRequest,
        progress: Option<ImageProgress>,
    ) -> Result<ImagesResponse, Error> {
        let request = self.request(&req)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let cancel = CancelFlag::new();
        let _cancel_on_drop = CancelOnDrop(cancel.clone());
        let job = ImageJob {
            request,
            cancel,
            progress,
            // PNG encoding runs on the worker too, off the caller's (async) threads.
            reply: Box::new(move |result| {
                let encoded = result.map(|images| images.iter().map(super::png::encode).collect::<Result<Vec<_>, _>>());
                let _ = tx.send(encoded);
            }),
        };
        self.handle.submit(job).map_err(|e| match e {
            ImageSubmitError::Overloaded(_) => Error::Overloaded(e.to_string()),
            ImageSubmitError::Stopped => Error::Internal(e.to_string()),
        })?;
        let pngs = match rx.await.map_err(|_| Error::Internal("the image worker dropped the request".into()))? {
            Ok(pngs) => pngs?,
            Err(ImageJobError::Cancelled) => return Err(Error::Internal("the image job was cancelled".into())),
            Err(ImageJobError::Failed(e)) => return Err(Error::Internal(e)),
        };
        let data = pngs.iter().map(|p| ImageData { b64_json: base64::encode(p), revised_prompt: None }).collect();
        Ok(ImagesResponse { created: super::unix_now(), data })
    }
}

/// Sets the flag when the request's future is dropped before the job is done.
struct CancelOnDrop(CancelFlag);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// The side of the square image a request without `size` gets: [`DEFAULT_SIDE`], or the
/// largest multiple of 16 whose square fits `max_pixels`.
fn default_side(max_pixels: usize) -> usize {
    if DEFAULT_SIDE * DEFAULT_SIDE <= max_pixels {
        return DEFAULT_SIDE;
    }
    (max_pixels as f64).sqrt() as usize / 16 * 16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_size_fits_the_model() {
        assert_eq!(default_side(usize::MAX), 1024);
        assert_eq!(default_side(1024 * 1024), 1024);
        assert_eq!(default_side(512 * 512), 512);
        assert_eq!(default_side(300 * 300), 288);
    }

    #[test]
    fn folders_with_a_flux_index_are_image_models() {
        let dir = std::env::temp_dir().join(format!("ferrite-image-index-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(!is_image_model(&dir));
        std::fs::write(dir.join("model_index.json"), r#"{"_class_name": "StableDiffusionPipeline"}"#).unwrap();
        assert!(!is_image_model(&dir));
        std::fs::write(
            dir.join("model_index.json"),
            r#"{"_class_name": "FluxPipeline", "vae": ["diffusers", "AutoencoderKL"]}"#,
        )
        .unwrap();
        assert!(is_image_model(&dir));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
