//! The FLUX transformer, scheduler and VAE decoder against diffusers (float32, CPU) on the tiny
//! random pipeline in tests/fixtures/tiny-flux, whose outputs scripts/diffusion/flux_reference.py
//! saved in tests/fixtures/tiny-flux-reference.safetensors (and flux_gguf.py the Q8_0 GGUF's).
//!
//! Tolerances: the f32 transformer output and latents within 1e-5 of the reference's largest value
//! (measured: 6e-7; f32 with a different summation order), the Q8_0 one within 3e-3 (measured
//! 1.2e-3: ferrite quantizes activations to 8 bits, the reference did not); the VAE output within
//! 1e-4 absolute (measured 4e-6); 8-bit pixels within 1 level (a value at a rounding boundary can
//! land on either side).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use ferrite_models::diffusion::component::{read_config, Component, Loader, TensorSource};
use ferrite_models::diffusion::flux::{FluxConfig, FluxTransformer};
use ferrite_models::diffusion::gguf_source::{bfl_location, BflGguf, BflLocation};
use ferrite_models::diffusion::latents::unpack_nhwc;
use ferrite_models::diffusion::scheduler::SchedulerConfig;
use ferrite_models::diffusion::vae::{to_u8, VaeConfig, VaeDecoder};
use ferrite_tensor::safetensors::SafetensorsModel;
use ferrite_tensor::{Device, Tensor};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

struct Reference(SafetensorsModel);

impl Reference {
    fn open(file: &str) -> Reference {
        Reference(SafetensorsModel::open(fixtures().join(file)).unwrap())
    }
    fn get(&self, name: &str) -> (Vec<f32>, Vec<usize>) {
        let t = self.0.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        (t.to_vec_f32().unwrap(), t.dims().to_vec())
    }
    fn tensor(&self, name: &str, device: &Device) -> Tensor {
        let (v, d) = self.get(name);
        Tensor::from_f32(&v, d, device).unwrap()
    }
}

fn device() -> Device {
    Device::cpu_with_threads(2).unwrap()
}

/// Largest difference relative to the reference's largest magnitude.
fn assert_rel(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    let diff = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(diff <= tol * scale, "{what}: max diff {diff} vs scale {scale} (tolerance {tol})");
    eprintln!("{what}: max diff {diff:.3e} of scale {scale:.3}");
}

fn transformer(dir: &str, device: &Device) -> FluxTransformer {
    let dir = fixtures().join("tiny-flux").join(dir);
    let cfg: FluxConfig = read_config(&dir).unwrap();
    let src = Component::open(&dir).unwrap();
    FluxTransformer::load(cfg, &Loader { src: &src, device }).unwrap()
}

/// (size key, token rows, token cols)
const SIZES: [(&str, usize, usize); 2] = [("s64x64", 4, 4), ("s48x80", 3, 5)];

/// The transformer's step-0 velocity for `size`, with the reference's text embeddings.
fn step0(tf: &FluxTransformer, r: &Reference, size: &str, rows: usize, cols: usize, guidance: Option<f32>) -> Vec<f32> {
    let dev = tf.device().clone();
    let pooled = tf.pooled_embedding(&r.tensor("clip.pooled", &dev)).unwrap();
    let context = tf.context(&r.tensor("t5.sequence", &dev)).unwrap();
    let t = r.get(&format!("{size}.transformer_timestep")).0[0];
    let temb = tf.temb(t, guidance, &pooled).unwrap();
    let latents = r.tensor(&format!("{size}.latents_packed"), &dev);
    tf.forward(&latents, &context, &temb, rows, cols).unwrap().to_vec_f32().unwrap()
}

#[test]
fn transformer_step0_matches_diffusers() {
    let (dev, r) = (device(), Reference::open("tiny-flux-reference.safetensors"));
    let tf = transformer("transformer", &dev);
    for (size, rows, cols) in SIZES {
        let got = step0(&tf, &r, size, rows, cols, None);
        assert_rel(&format!("{size} transformer_out"), &got, &r.get(&format!("{size}.transformer_out")).0, 1e-5);
    }
}

#[test]
fn guidance_transformer_step0_matches_diffusers() {
    let (dev, r) = (device(), Reference::open("tiny-flux-reference.safetensors"));
    let tf = transformer("transformer-guidance", &dev);
    assert!(tf.config().guidance_embeds);
    let g = r.get("dev.guidance").0[0];
    let got = step0(&tf, &r, "s64x64", 4, 4, Some(g));
    assert_rel("dev transformer_out", &got, &r.get("dev.transformer_out").0, 1e-5);
    // Without a guidance value a guidance-distilled model refuses to run.
    let pooled = tf.pooled_embedding(&r.tensor("clip.pooled", &dev)).unwrap();
    assert!(tf.temb(0.5, None, &pooled).is_err());
}

#[test]
fn q8_0_gguf_transformer_with_bfl_names_matches_diffusers() {
    let (dev, r) = (device(), Reference::open("tiny-flux-reference.safetensors"));
    let q = Reference::open("tiny-flux-q8_0-reference.safetensors");
    let cfg: FluxConfig = read_config(&fixtures().join("tiny-flux/transformer")).unwrap();
    let src = BflGguf::open(&fixtures().join("tiny-flux/transformer-q8_0.gguf")).unwrap();
    let tf = FluxTransformer::load(cfg, &Loader { src: &src, device: &dev }).unwrap();
    for (size, rows, cols) in SIZES {
        let got = step0(&tf, &r, size, rows, cols, None);
        // The reference ran diffusers on the dequantized Q8_0 weights; ferrite quantizes the
        // activations to 8 bits for the integer dot products, as llama.cpp does.
        assert_rel(&format!("{size} Q8_0 transformer_out"), &got, &q.get(&format!("{size}.transformer_out")).0, 3e-3);
    }
}

#[test]
fn scheduler_sigmas_match_diffusers() {
    let r = Reference::open("tiny-flux-reference.safetensors");
    let schnell = SchedulerConfig::load(&fixtures().join("tiny-flux/scheduler")).unwrap();
    for (size, rows, cols) in SIZES {
        let s = schnell.sigmas(4, rows * cols);
        assert_eq!(s, r.get(&format!("{size}.sigmas")).0, "{size}");
        assert_eq!(schnell.timesteps(&s), r.get(&format!("{size}.timesteps")).0);
    }
    let dev: SchedulerConfig = serde_json::from_str(
        r#"{"num_train_timesteps":1000,"shift":3.0,"use_dynamic_shifting":true,"base_shift":0.5,"max_shift":1.15,"base_image_seq_len":256,"max_image_seq_len":4096}"#,
    )
    .unwrap();
    assert!((dev.mu(16) - 0.459375).abs() < 1e-12);
    let s = dev.sigmas(4, 16);
    assert_rel("dev sigmas", &s, &r.get("dev.sigmas").0, 1e-6);
}

#[test]
fn euler_steps_from_the_reference_latents_match_diffusers() {
    let (dev, r) = (device(), Reference::open("tiny-flux-reference.safetensors"));
    let tf = transformer("transformer", &dev);
    let sched = SchedulerConfig::load(&fixtures().join("tiny-flux/scheduler")).unwrap();
    let (size, rows, cols) = SIZES[1];
    let pooled = tf.pooled_embedding(&r.tensor("clip.pooled", &dev)).unwrap();
    let context = tf.context(&r.tensor("t5.sequence", &dev)).unwrap();
    let sigmas = sched.sigmas(4, rows * cols);
    let mut x = r.tensor(&format!("{size}.latents_packed"), &dev);
    let (steps, _) = r.get(&format!("{size}.step_latents"));
    let per = steps.len() / 4;
    for (i, t) in sched.timesteps(&sigmas).iter().enumerate() {
        let temb = tf.temb(t / 1000.0, None, &pooled).unwrap();
        let v = tf.forward(&x, &context, &temb, rows, cols).unwrap();
        x = x.add(&v.scale(sigmas[i + 1] - sigmas[i]).unwrap()).unwrap();
        assert_rel(&format!("latents after step {i}"), &x.to_vec_f32().unwrap(), &steps[i * per..(i + 1) * per], 1e-5);
    }
}

#[test]
fn vae_decoder_matches_diffusers_to_the_pixel() {
    let (dev, r) = (device(), Reference::open("tiny-flux-reference.safetensors"));
    let dir = fixtures().join("tiny-flux/vae");
    let cfg: VaeConfig = read_config(&dir).unwrap();
    let src = Component::open(&dir).unwrap();
    let vae = VaeDecoder::load(cfg, &Loader { src: &src, device: &dev }).unwrap();
    assert_eq!(vae.config().scale_factor(), 8);
    for (size, rows, cols) in SIZES {
        let (packed, _) = r.get(&format!("{size}.final_latents"));
        let z = unpack_nhwc(&packed, 2, rows, cols);
        let z = Tensor::from_f32(&z, [2, 2 * rows, 2 * cols, 16], &dev).unwrap();
        let px = vae.decode(&z).unwrap();
        let (h, w) = (16 * rows, 16 * cols);
        assert_eq!(px.dims(), &[2, h, w, 3]);
        let got = px.to_vec_f32().unwrap();
        // The reference is NCHW.
        let (want, _) = r.get(&format!("{size}.decoded"));
        let mut nhwc = vec![0f32; want.len()];
        for b in 0..2 {
            for c in 0..3 {
                for y in 0..h {
                    for x in 0..w {
                        nhwc[((b * h + y) * w + x) * 3 + c] = want[((b * 3 + c) * h + y) * w + x];
                    }
                }
            }
        }
        let diff = got.iter().zip(&nhwc).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(diff < 1e-4, "{size} decoded: max diff {diff}");
        let (u8s, _) = r.get(&format!("{size}.image_u8"));
        let worst = got.iter().zip(&u8s).map(|(&a, &b)| (to_u8(a) as i32 - b as i32).abs()).max().unwrap();
        assert!(worst <= 1, "{size}: a pixel is {worst} levels off");
        eprintln!("{size} decoded: max diff {diff:.2e}, worst pixel {worst} levels");
    }
}

/// A source that remembers every tensor the loader asked for, with its shape.
struct Recording<'a> {
    inner: &'a dyn TensorSource,
    seen: Mutex<BTreeMap<String, Vec<usize>>>,
}

impl TensorSource for Recording<'_> {
    fn get(&self, name: &str) -> ferrite_models::Result<Tensor> {
        let t = self.inner.get(name)?;
        self.seen.lock().unwrap().insert(name.to_string(), t.dims().to_vec());
        Ok(t)
    }
}

fn as_map(list: Vec<(String, Vec<usize>)>) -> BTreeMap<String, Vec<usize>> {
    list.into_iter().collect()
}

/// The names and shapes diffusers lists for a component of the real FLUX.1-schnell.
fn schnell_names(component: &str) -> BTreeMap<String, Vec<usize>> {
    let text = std::fs::read_to_string(fixtures().join("flux-schnell-names.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    serde_json::from_value(v[component]["tensors"].clone()).unwrap()
}

#[test]
fn loaders_read_exactly_their_expected_weight_lists() {
    let dev = device();
    // The transformer and the VAE ask for exactly the tensors their expected_weights name.
    for dir in ["transformer", "transformer-guidance"] {
        let d = fixtures().join("tiny-flux").join(dir);
        let cfg: FluxConfig = read_config(&d).unwrap();
        let comp = Component::open(&d).unwrap();
        let rec = Recording { inner: &comp, seen: Mutex::default() };
        FluxTransformer::load(cfg.clone(), &Loader { src: &rec, device: &dev }).unwrap();
        assert_eq!(rec.seen.into_inner().unwrap(), as_map(cfg.expected_weights()), "{dir}");
        // ...and every tensor diffusers saved is one of them.
        assert_eq!(comp.shapes().into_iter().collect::<BTreeMap<_, _>>(), as_map(cfg.expected_weights()), "{dir} file");
    }
    let d = fixtures().join("tiny-flux/vae");
    let cfg: VaeConfig = read_config(&d).unwrap();
    let comp = Component::open(&d).unwrap();
    let rec = Recording { inner: &comp, seen: Mutex::default() };
    VaeDecoder::load(cfg.clone(), &Loader { src: &rec, device: &dev }).unwrap();
    assert_eq!(rec.seen.into_inner().unwrap(), as_map(cfg.expected_weights()));
}

#[test]
fn real_flux_schnell_transformer_and_vae_names_and_shapes_are_what_the_loaders_expect() {
    let configs = fixtures().join("flux-schnell-configs");
    let cfg: FluxConfig = read_config(&configs.join("transformer")).unwrap();
    assert_eq!((cfg.dim(), cfg.num_layers, cfg.num_single_layers), (3072, 19, 38));
    assert_eq!(as_map(cfg.expected_weights()), schnell_names("transformer"));
    // The VAE decoder reads the decoder half of the checkpoint (and post_quant_conv when used).
    let vcfg: VaeConfig = read_config(&configs.join("vae")).unwrap();
    let all = schnell_names("vae");
    let decoder: BTreeMap<_, _> =
        all.into_iter().filter(|(k, _)| k.starts_with("decoder.") || k.starts_with("post_quant_conv")).collect();
    assert_eq!(as_map(vcfg.expected_weights()), decoder);
    assert_eq!(vcfg.scale_factor(), 8);
    // Every diffusers tensor maps onto a BFL/GGUF tensor of the right shape, and every BFL tensor
    // is used.
    let bfl = schnell_names("transformer_bfl");
    let mut used = std::collections::BTreeSet::new();
    for (name, shape) in cfg.expected_weights() {
        let loc = bfl_location(&name).unwrap_or_else(|| panic!("{name} has no BFL location"));
        let (bname, rows) = match &loc {
            BflLocation::Whole(n) | BflLocation::SwappedHalves(n) => (n.clone(), None),
            BflLocation::Rows { name, part, len } => (name.clone(), Some((part * cfg.dim(), len * cfg.dim()))),
        };
        let bshape = bfl.get(&bname).unwrap_or_else(|| panic!("{name} -> {bname}, which FLUX.1 does not have"));
        match rows {
            None => assert_eq!(bshape, &shape, "{name} -> {bname}"),
            Some((start, len)) => {
                assert!(start + len <= bshape[0] && len == shape[0] && bshape[1..] == shape[1..], "{name} -> {bname}")
            }
        }
        used.insert(bname);
    }
    assert_eq!(used, bfl.keys().cloned().collect());
}
