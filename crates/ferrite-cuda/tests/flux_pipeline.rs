//! The tiny FLUX pipeline (crates/ferrite-models/tests/fixtures/tiny-flux) run on the CUDA
//! backend (on the emulator of `kernels/emu/`, and on a real GPU when the machine has one), the
//! same model definition as on the CPU: text embeddings, the denoising loop from diffusers'
//! initial latents, and the decoded pixels against diffusers' reference outputs, with the
//! tolerances of the CPU's and WGPU's own test (1e-4 relative, 8-bit pixels within 1 level).

#![allow(clippy::unwrap_used)]

use std::ops::ControlFlow;
use std::path::PathBuf;

use ferrite_models::diffusion::FluxPipeline;
use ferrite_tensor::safetensors::SafetensorsModel;
use ferrite_tensor::Tensor;

mod common;

use common::devices;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../ferrite-models/tests/fixtures")
}

fn reference(name: &str) -> Vec<f32> {
    let st = SafetensorsModel::open(fixtures().join("tiny-flux-reference.safetensors")).unwrap();
    st.tensor(name).unwrap().to_vec_f32().unwrap()
}

fn max_rel(got: &[f32], want: &[f32]) -> f32 {
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max) / scale
}

#[test]
fn tiny_flux_on_cuda_matches_diffusers() {
    for g in devices() {
        run(g);
    }
}

fn run(g: &ferrite_tensor::Device) {
    let mut p = FluxPipeline::load(&fixtures().join("tiny-flux"), g).unwrap();
    p.set_max_sequence_length(32);
    let prompts = [
        "A photograph of an astronaut riding a horse on the moon.",
        "Un café à Zürich, l'été: crème brûlée & naïve art — ¿qué? ¡Sí!",
    ];
    let emb = p.encode_prompts(&prompts).unwrap();
    let text = max_rel(&emb.sequence.to_vec_f32().unwrap(), &reference("t5.sequence"))
        .max(max_rel(&emb.pooled.to_vec_f32().unwrap(), &reference("clip.pooled")));
    assert!(text < 1e-4, "text embeddings: {text}");
    let (rows, cols) = (3, 5);
    let latents = Tensor::from_f32(&reference("s48x80.latents_packed"), [2, rows * cols, 64], g).unwrap();
    let x = p.denoise(latents, rows, cols, &emb, 4, None, &mut |_, _| ControlFlow::Continue(())).unwrap();
    let lat = max_rel(&x.to_vec_f32().unwrap(), &reference("s48x80.final_latents"));
    assert!(lat < 1e-4, "final latents: {lat}");
    let images = FluxPipeline::to_images(&p.decode(&x, rows, cols).unwrap()).unwrap();
    let want = reference("s48x80.image_u8");
    let n = images[0].rgb.len();
    let worst = images
        .iter()
        .enumerate()
        .flat_map(|(i, img)| img.rgb.iter().zip(&want[i * n..]).map(|(&a, &b)| (a as i32 - b as i32).abs()))
        .max()
        .unwrap();
    assert!(worst <= 1, "a pixel is {worst} levels off");
    eprintln!("{}: text {text:.1e}, latents {lat:.1e}, worst pixel {worst}", g.name());
}
