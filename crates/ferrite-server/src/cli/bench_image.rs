//! `ferrite bench` on an image model: seconds per denoising step, for the VAE decode (with the
//! PNG encoding), and per image, timed as `scripts/diffusion/bench_diffusers.py` times diffusers
//! so the two can run side by side.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{bail, Result};
use ferrite::{Engine, ImageGenerationRequest};

use super::bench::median;

/// One image of `size` (`WxH`) with `steps` steps, `repetitions` times after a warm-up; prints
/// one JSON line of medians.
pub fn run(engine: Engine, size: &str, steps: u32, repetitions: usize, threads: usize) -> Result<()> {
    if steps < 2 {
        bail!("--steps must be at least 2 (seconds per step are timed between steps)");
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let one = |seed: u64| -> Result<(f64, f64, f64)> {
        let marks = Arc::new(Mutex::new(Vec::new()));
        let seen = marks.clone();
        let mut req =
            ImageGenerationRequest::new("a lighthouse on a cliff at dawn").model(engine.model_name()).seed(seed);
        req.size = Some(size.to_string());
        req.num_inference_steps = Some(steps);
        let start = Instant::now();
        rt.block_on(engine.generate_images_with_progress(req, move |_, _| {
            seen.lock().map(|mut m| m.push(Instant::now())).ok();
        }))?;
        let end = Instant::now();
        let marks = marks.lock().map(|m| m.clone()).unwrap_or_default();
        let (Some(first), Some(last)) = (marks.first(), marks.last()) else { bail!("no denoising step was reported") };
        let per_step = (*last - *first).as_secs_f64() / (marks.len() - 1).max(1) as f64;
        Ok((per_step, (end - *last).as_secs_f64(), (end - start).as_secs_f64()))
    };
    one(0)?;
    let (mut step, mut decode, mut image) = (vec![], vec![], vec![]);
    for r in 0..repetitions {
        let (s, d, i) = one(r as u64 + 1)?;
        step.push(s);
        decode.push(d);
        image.push(i);
    }
    let r3 = |x: f64| (x * 1000.0).round() / 1000.0;
    let line = serde_json::json!({
        "model": engine.model_name(),
        "threads": threads,
        "size": size,
        "steps": steps,
        "s_per_step": r3(median(step)),
        "s_decode": r3(median(decode)),
        "s_per_image": r3(median(image)),
    });
    println!("{line}");
    Ok(())
}
