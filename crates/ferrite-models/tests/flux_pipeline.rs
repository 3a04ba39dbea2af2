//! The whole FLUX pipeline on the tiny random fixture against diffusers' outputs
//! (tests/fixtures/tiny-flux-reference.safetensors): text encoders through both tokenizers, the
//! denoising loop from the reference's initial latents, and the decoded 8-bit images; plus what
//! the pipeline does with seeds, batches, cancellation and bad requests.

#![allow(clippy::unwrap_used)]

use std::ops::ControlFlow;
use std::path::PathBuf;

use ferrite_models::diffusion::{FluxPipeline, ImageRequest};
use ferrite_models::Error;
use ferrite_tensor::safetensors::SafetensorsModel;
use ferrite_tensor::{Device, Tensor};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn reference(name: &str) -> Vec<f32> {
    let st = SafetensorsModel::open(fixtures().join("tiny-flux-reference.safetensors")).unwrap();
    st.tensor(name).unwrap().to_vec_f32().unwrap()
}

fn pipeline() -> FluxPipeline {
    let mut p = FluxPipeline::load(&fixtures().join("tiny-flux"), &Device::cpu_with_threads(2).unwrap()).unwrap();
    // The reference used max_sequence_length 32.
    p.set_max_sequence_length(32);
    p
}

const PROMPTS: [&str; 2] = [
    "A photograph of an astronaut riding a horse on the moon.",
    "Un café à Zürich, l'été: crème brûlée & naïve art — ¿qué? ¡Sí!",
];

fn max_rel(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max) / scale
}

fn run_ok(_: usize, _: usize) -> ControlFlow<()> {
    ControlFlow::Continue(())
}

#[test]
fn prompts_latents_and_pixels_match_diffusers() {
    let p = pipeline();
    let emb = p.encode_prompts(&PROMPTS).unwrap();
    let pooled = max_rel(&emb.pooled.to_vec_f32().unwrap(), &reference("clip.pooled"));
    let seq = max_rel(&emb.sequence.to_vec_f32().unwrap(), &reference("t5.sequence"));
    assert!(pooled < 1e-4 && seq < 1e-4, "text embeddings: {pooled} {seq}");
    for (size, rows, cols) in [("s64x64", 4, 4), ("s48x80", 3, 5)] {
        let latents = reference(&format!("{size}.latents_packed"));
        let latents = Tensor::from_f32(&latents, [2, rows * cols, 64], p.transformer().device()).unwrap();
        let x = p.denoise(latents, rows, cols, &emb, 4, None, &mut run_ok).unwrap();
        let lat = max_rel(&x.to_vec_f32().unwrap(), &reference(&format!("{size}.final_latents")));
        assert!(lat < 1e-4, "{size} final latents: {lat}");
        let images = FluxPipeline::to_images(&p.decode(&x, rows, cols).unwrap()).unwrap();
        let want = reference(&format!("{size}.image_u8"));
        assert_eq!(images.len(), 2);
        let mut worst = 0;
        for (i, img) in images.iter().enumerate() {
            assert_eq!((img.width, img.height), (16 * cols, 16 * rows));
            let w = &want[i * img.rgb.len()..(i + 1) * img.rgb.len()];
            worst = worst.max(img.rgb.iter().zip(w).map(|(&a, &b)| (a as i32 - b as i32).abs()).max().unwrap());
        }
        assert!(worst <= 1, "{size}: a pixel is {worst} levels off");
        eprintln!("{size}: text {pooled:.1e}/{seq:.1e}, latents {lat:.1e}, worst pixel {worst}");
    }
}

fn request(n: usize, seed: u64) -> ImageRequest {
    ImageRequest {
        prompt: PROMPTS[0].into(),
        negative_prompt: None,
        width: 64,
        height: 48,
        n,
        steps: Some(2),
        guidance_scale: None,
        seed: Some(seed),
    }
}

#[test]
fn seeds_batches_and_cancellation() {
    let p = pipeline();
    assert_eq!(p.default_steps(), 4);
    let a = p.generate(&request(1, 7), &mut run_ok).unwrap();
    let b = p.generate(&request(1, 7), &mut run_ok).unwrap();
    let c = p.generate(&request(1, 8), &mut run_ok).unwrap();
    assert_eq!((a[0].width, a[0].height, a[0].rgb.len()), (64, 48, 64 * 48 * 3));
    assert_eq!(a, b, "the same seed gives the same image");
    assert_ne!(a, c, "another seed gives another image");
    let two = p.generate(&request(2, 7), &mut run_ok).unwrap();
    assert_eq!(two.len(), 2);
    assert_ne!(two[0], two[1], "the images of one batch start from different noise");
    // Cancelling after the first step stops the job there.
    let mut calls = Vec::new();
    let r = p.generate(&request(1, 7), &mut |done, total| {
        calls.push((done, total));
        ControlFlow::Break(())
    });
    assert!(matches!(r, Err(Error::Cancelled)), "{r:?}");
    assert_eq!(calls, vec![(1, 2)]);
}

#[test]
fn bad_requests_are_refused_with_reasons() {
    let p = pipeline();
    let ok = request(1, 1);
    assert!(p.validate(&ok).is_ok());
    let cases = [
        (ImageRequest { width: 50, ..ok.clone() }, "size", "multiples of 16"),
        (ImageRequest { height: 0, ..ok.clone() }, "size", "multiples of 16"),
        (ImageRequest { width: 2048, height: 2048, ..ok.clone() }, "size", "limit"),
        (ImageRequest { n: 0, ..ok.clone() }, "n", "n must be"),
        (ImageRequest { n: 11, ..ok.clone() }, "n", "n must be"),
        (ImageRequest { steps: Some(0), ..ok.clone() }, "num_inference_steps", "num_inference_steps"),
        (ImageRequest { negative_prompt: Some("blurry".into()), ..ok.clone() }, "negative_prompt", "negative_prompt"),
        (ImageRequest { guidance_scale: Some(3.5), ..ok.clone() }, "guidance_scale", "guidance_scale"),
        (ImageRequest { prompt: " ".into(), ..ok.clone() }, "prompt", "prompt"),
    ];
    for (req, field, want) in cases {
        let err = p.validate(&req).unwrap_err();
        assert!(err.message.contains(want), "{req:?}: {err}");
        assert_eq!(err.field, field, "{req:?}: {err}");
        assert!(p.generate(&req, &mut run_ok).is_err());
    }
    assert_eq!(p.max_pixels(), 4096 * 256);
}

#[test]
fn a_q8_0_gguf_transformer_runs_in_the_pipeline() {
    let dev = Device::cpu_with_threads(2).unwrap();
    let dir = fixtures().join("tiny-flux");
    let mut p = FluxPipeline::load_with_transformer(&dir, Some(&dir.join("transformer-q8_0.gguf")), &dev).unwrap();
    p.set_max_sequence_length(32);
    let q = p.generate(&request(1, 3), &mut run_ok).unwrap();
    let f = pipeline().generate(&request(1, 3), &mut run_ok).unwrap();
    // Same noise and prompt: the Q8_0 image is close to the f32 one.
    let mean: f64 =
        q[0].rgb.iter().zip(&f[0].rgb).map(|(&a, &b)| (a as f64 - b as f64).abs()).sum::<f64>() / q[0].rgb.len() as f64;
    assert!(mean < 2.0, "mean pixel difference {mean}");
    eprintln!("Q8_0 vs f32: mean pixel difference {mean:.3}");
}
