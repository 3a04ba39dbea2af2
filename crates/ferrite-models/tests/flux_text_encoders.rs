//! FLUX's text side against diffusers/transformers: the CLIP and T5 token ids, CLIP's pooled
//! output and T5's sequence output of the tiny random pipeline in `fixtures/tiny-flux/`
//! (CLIP stored f16, T5 bf16), compared with `fixtures/tiny-flux-reference.safetensors`, which
//! `scripts/diffusion/flux_reference.py` computed in f32 from the same stored weights.
//!
//! Tolerances: ids exactly; outputs within 1e-5 of the reference's largest magnitude
//! (relative, max over elements) and a cosine above 0.999999 per row. Both sides run f32 from
//! identical weights, so only summation order differs (seen: CLIP 1.5e-7, T5 3.4e-7 relative).

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use ferrite_models::diffusion::{clip, t5, ClipTextEncoder, PromptTokenizer, T5Encoder};
use ferrite_tensor::safetensors::SafetensorsModel;
use ferrite_tensor::Device;
use serde_json::Value;

mod common;

use common::{cosine, max_abs_diff};

const REL_TOL: f32 = 1e-5;
const COS_TOL: f64 = 0.999_999;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn tiny() -> PathBuf {
    fixtures().join("tiny-flux")
}

fn reference_json() -> Value {
    let text = std::fs::read_to_string(fixtures().join("tiny-flux-reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A reference tensor as (shape, f32 values).
fn reference(name: &str) -> (Vec<usize>, Vec<f32>) {
    let st = SafetensorsModel::open(fixtures().join("tiny-flux-reference.safetensors")).unwrap();
    let t = st.tensor(name).unwrap();
    (t.dims().to_vec(), t.to_vec_f32().unwrap())
}

/// Reference ids (stored as exact f32) as rows.
fn reference_ids(name: &str) -> Vec<Vec<u32>> {
    let (shape, v) = reference(name);
    v.chunks(shape[1]).map(|row| row.iter().map(|&x| x as u32).collect()).collect()
}

fn prompts() -> Vec<String> {
    reference_json()["prompts"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_string()).collect()
}

fn device() -> Device {
    Device::cpu_with_threads(2).unwrap()
}

/// Asserts `got` matches `want` row by row (rows of `row` elements) within the tolerances, and
/// prints the figures.
fn assert_close(what: &str, got: &[f32], want: &[f32], row: usize) {
    assert_eq!(got.len(), want.len(), "{what}: element count");
    let scale = want.iter().fold(0f32, |m, x| m.max(x.abs()));
    let diff = max_abs_diff(got, want);
    let worst_cos = got.chunks(row).zip(want.chunks(row)).map(|(g, w)| cosine(g, w)).fold(1.0, f64::min);
    println!("{what}: max |diff| {diff:.3e} (relative {:.3e}), worst row cosine {worst_cos:.9}", diff / scale);
    assert!(diff <= REL_TOL * scale, "{what}: max |diff| {diff} over {REL_TOL} x {scale}");
    assert!(worst_cos >= COS_TOL, "{what}: cosine {worst_cos}");
}

#[test]
fn clip_ids_match_transformers() {
    let tok = PromptTokenizer::load(&tiny().join("tokenizer")).unwrap();
    assert_eq!(tok.model_max_length(), 77);
    let prompts = prompts();
    let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let ids = tok.encode(&refs, tok.model_max_length()).unwrap();
    assert_eq!(ids, reference_ids("clip.input_ids"));
}

/// The real FLUX.1 `tokenizer/` has only vocab.json and merges.txt: the tokenizer built from
/// them gives the same ids as the fixture's tokenizer.json, also when a prompt is truncated.
#[test]
fn clip_ids_from_vocab_and_merges_match_tokenizer_json() {
    let dir = std::env::temp_dir().join(format!("ferrite-clip-vocab-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["vocab.json", "merges.txt", "tokenizer_config.json"] {
        std::fs::copy(tiny().join("tokenizer").join(f), dir.join(f)).unwrap();
    }
    let from_vocab = PromptTokenizer::load(&dir).unwrap();
    let from_json = PromptTokenizer::load(&tiny().join("tokenizer")).unwrap();
    let long = "a very long prompt, ".repeat(30);
    let mut prompts = prompts();
    prompts.extend([long, "Numbers 12345 and   spaces\tand CAPS, it's 'quoted' — ok?".into(), String::new()]);
    let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let ids = from_vocab.encode(&refs, 77).unwrap();
    assert_eq!(ids, from_json.encode(&refs, 77).unwrap());
    assert_eq!(ids[..2], reference_ids("clip.input_ids")[..]);
    let long_row = &ids[2];
    assert_eq!((long_row[0], long_row[76]), (49406, 49407), "truncated row keeps <|startoftext|> and <|endoftext|>");
    assert_eq!(ids[4][..3], [49406, 49407, 49407], "empty prompt: bos, eos, then padding");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn t5_ids_match_transformers() {
    let tok = PromptTokenizer::load(&tiny().join("tokenizer_2")).unwrap();
    let max_len = reference_json()["t5_max_sequence_length"].as_u64().unwrap() as usize;
    let prompts = prompts();
    let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let ids = tok.encode(&refs, max_len).unwrap();
    assert_eq!(ids, reference_ids("t5.input_ids"));
    assert_eq!(tok.pad_id(), 0);
}

#[test]
fn clip_pooled_matches_transformers() {
    let enc = ClipTextEncoder::load(&tiny().join("text_encoder"), &device()).unwrap();
    let ids = reference_ids("clip.input_ids");
    let pooled = enc.pooled(&ids).unwrap();
    let (shape, want) = reference("clip.pooled");
    assert_eq!(pooled.dims(), shape.as_slice());
    assert_close("CLIP pooled", &pooled.to_vec_f32().unwrap(), &want, shape[1]);
    // One prompt alone gives its row of the batch.
    let single = enc.pooled(&ids[1..]).unwrap().to_vec_f32().unwrap();
    assert_close("CLIP pooled, prompt 2 alone", &single, &want[shape[1]..], shape[1]);
}

#[test]
fn t5_sequence_matches_transformers() {
    let enc = T5Encoder::load(&tiny().join("text_encoder_2"), &device()).unwrap();
    let ids = reference_ids("t5.input_ids");
    let seq = enc.encode(&ids).unwrap();
    let (shape, want) = reference("t5.sequence");
    assert_eq!(seq.dims(), shape.as_slice());
    let got = seq.to_vec_f32().unwrap();
    assert_close("T5 sequence", &got, &want, shape[2]);
    // A second call reuses the cached position bias; a shorter length builds a new one.
    assert_eq!(enc.encode(&ids).unwrap().to_vec_f32().unwrap(), got);
    let short: Vec<Vec<u32>> = ids.iter().map(|r| r[..8].to_vec()).collect();
    assert_eq!(enc.encode(&short).unwrap().dims(), [2, 8, shape[2]]);
    assert_eq!(enc.encode(&ids).unwrap().to_vec_f32().unwrap(), got);
}

#[test]
fn bad_ids_are_errors() {
    let clip = ClipTextEncoder::load(&tiny().join("text_encoder"), &device()).unwrap();
    let t5 = T5Encoder::load(&tiny().join("text_encoder_2"), &device()).unwrap();
    for (what, ids) in [
        ("no rows", vec![]),
        ("ragged rows", vec![vec![1, 2, 3], vec![1, 2]]),
        ("empty row", vec![vec![]]),
        ("id outside the vocabulary", vec![vec![1, 99_999]]),
    ] {
        assert!(clip.pooled(&ids).is_err(), "CLIP: {what}");
        assert!(t5.encode(&ids).is_err(), "T5: {what}");
    }
    assert!(clip.pooled(&[vec![1; 78]]).is_err(), "CLIP: longer than the position table");
}

/// A copy of a fixture component folder with an edited config.json.
fn with_config(component: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let src = tiny().join(component);
    let dir = std::env::temp_dir().join(format!(
        "ferrite-{component}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(src.join("model.safetensors"), dir.join("model.safetensors")).unwrap();
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    edit(&mut cfg);
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    dir
}

#[test]
fn missing_or_misshapen_weights_are_errors_naming_them() {
    let dir = with_config("text_encoder", |c| c["num_hidden_layers"] = 3.into());
    let err = ClipTextEncoder::load(&dir, &device()).unwrap_err().to_string();
    assert!(err.contains("encoder.layers.2."), "{err}");
    std::fs::remove_dir_all(&dir).ok();

    let dir = with_config("text_encoder", |c| c["intermediate_size"] = 48.into());
    let err = ClipTextEncoder::load(&dir, &device()).unwrap_err().to_string();
    assert!(err.contains("mlp.fc1.weight") && err.contains("[48, 32]"), "{err}");
    std::fs::remove_dir_all(&dir).ok();

    let dir = with_config("text_encoder_2", |c| c["relative_attention_num_buckets"] = 16.into());
    let err = T5Encoder::load(&dir, &device()).unwrap_err().to_string();
    assert!(err.contains("relative_attention_bias.weight"), "{err}");
    std::fs::remove_dir_all(&dir).ok();

    let dir = with_config("text_encoder_2", |c| c["feed_forward_proj"] = "relu".into());
    let err = T5Encoder::load(&dir, &device()).unwrap_err().to_string();
    assert!(err.contains("feed_forward_proj"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

/// The loaders ask for exactly the tensors the fixture checkpoints hold (nothing unread).
#[test]
fn loaders_read_every_stored_tensor() {
    for (component, list) in [
        ("text_encoder", {
            let text = std::fs::read_to_string(tiny().join("text_encoder/config.json")).unwrap();
            clip::expected_weights(&clip::ClipConfig::from_json(&text).unwrap())
        }),
        ("text_encoder_2", {
            let text = std::fs::read_to_string(tiny().join("text_encoder_2/config.json")).unwrap();
            t5::expected_weights(&t5::T5Config::from_json(&text).unwrap())
        }),
    ] {
        let st = SafetensorsModel::open(tiny().join(component)).unwrap();
        let mut stored: Vec<(String, Vec<usize>)> =
            st.tensor_infos().iter().map(|t| (t.name.clone(), t.shape.dims().to_vec())).collect();
        let mut want = list.clone();
        stored.sort();
        want.sort();
        assert_eq!(want, stored, "{component}");
    }
}

/// The published FLUX.1-schnell CLIP-L and T5-XXL configs make the loaders ask for exactly the
/// tensors (names and shapes) that transformers instantiates and `save_pretrained` writes for
/// them (`fixtures/flux-schnell-names.json`, from transformers on the meta device), and the
/// tied aliases it lists are names the loader accepts.
#[test]
fn schnell_configs_ask_for_transformers_names_and_shapes() {
    let names: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("flux-schnell-names.json")).unwrap()).unwrap();
    let config =
        |c: &str| std::fs::read_to_string(fixtures().join("flux-schnell-configs").join(c).join("config.json")).unwrap();
    let lists = [
        ("text_encoder", clip::expected_weights(&clip::ClipConfig::from_json(&config("text_encoder")).unwrap())),
        ("text_encoder_2", t5::expected_weights(&t5::T5Config::from_json(&config("text_encoder_2")).unwrap())),
    ];
    for (component, list) in lists {
        let entry = &names[component];
        let shape_of = |n: &str| -> Vec<usize> {
            entry["tensors"][n].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect()
        };
        let mut want: Vec<(String, Vec<usize>)> = entry["saved"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| (n.as_str().unwrap().to_string(), shape_of(n.as_str().unwrap())))
            .collect();
        let mut got = list;
        want.sort();
        got.sort();
        assert_eq!(got.len(), want.len(), "{component}: tensor count");
        assert_eq!(got, want, "{component}");
        let params: u64 = got.iter().map(|(_, s)| s.iter().product::<usize>() as u64).sum();
        assert_eq!(params, entry["parameters"].as_u64().unwrap(), "{component}: parameters");
        for (alias, target) in entry["aliases"].as_object().unwrap() {
            assert!(got.iter().any(|(n, _)| n == target.as_str().unwrap()), "{component}: {alias} -> {target}");
        }
    }
}

/// A copy of a fixture's weights with every tensor renamed by `rename` (f32, F16 and BF16 bytes
/// copied as stored).
fn renamed_copy(component: &str, rename: impl Fn(&str) -> String) -> PathBuf {
    use safetensors::tensor::{Dtype, TensorView};
    let src = tiny().join(component);
    let dir = std::env::temp_dir().join(format!("ferrite-renamed-{component}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(src.join("config.json"), dir.join("config.json")).unwrap();
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let views: Vec<(String, TensorView<'_>)> = st
        .tensors()
        .into_iter()
        .map(|(name, t)| {
            assert!(matches!(t.dtype(), Dtype::F32 | Dtype::F16 | Dtype::BF16));
            (rename(&name), TensorView::new(t.dtype(), t.shape().to_vec(), t.data()).unwrap())
        })
        .collect();
    safetensors::serialize_to_file(views, &None, &dir.join("model.safetensors")).unwrap();
    dir
}

/// The published FLUX.1 checkpoints were saved by transformers 4: CLIP under `text_model.`,
/// and T5's embedding possibly as `encoder.embed_tokens.weight`. Both load, with the same output.
#[test]
fn older_transformers_names_load_alike() {
    let ids = reference_ids("clip.input_ids");
    let want = ClipTextEncoder::load(&tiny().join("text_encoder"), &device()).unwrap().pooled(&ids).unwrap();
    let dir = renamed_copy("text_encoder", |n| format!("text_model.{n}"));
    let got = ClipTextEncoder::load(&dir, &device()).unwrap().pooled(&ids).unwrap();
    assert_eq!(got.to_vec_f32().unwrap(), want.to_vec_f32().unwrap());
    std::fs::remove_dir_all(&dir).ok();

    let ids = reference_ids("t5.input_ids");
    let want = T5Encoder::load(&tiny().join("text_encoder_2"), &device()).unwrap().encode(&ids).unwrap();
    let dir = renamed_copy("text_encoder_2", |n| n.replace("shared.weight", "encoder.embed_tokens.weight"));
    let got = T5Encoder::load(&dir, &device()).unwrap().encode(&ids).unwrap();
    assert_eq!(got.to_vec_f32().unwrap(), want.to_vec_f32().unwrap());
    std::fs::remove_dir_all(&dir).ok();
}
