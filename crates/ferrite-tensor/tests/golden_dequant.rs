//! Dequantization against golden values from llama.cpp's `gguf` Python package
//! (`scripts/golden_dequant.py`). The raw blocks are read straight from the model files at the
//! recorded absolute offsets (no GGUF reader involved), or from committed hex for the synthetic
//! Q4_0/Q5_K cases; the f32 output must match bit for bit (sha256 of the little-endian bytes plus
//! a few explicit bit patterns).

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use ferrite_tensor::model_files::test_model;
use ferrite_tensor::quant::dequantize;
use ferrite_tensor::DType;
use sha2::{Digest, Sha256};

fn dtype_named(name: &str) -> DType {
    DType::ALL.into_iter().find(|d| format!("{d:?}") == name).unwrap_or_else(|| panic!("unknown dtype {name}"))
}

fn hex_bytes(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

fn hex_digest(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn read_range(path: &PathBuf, offset: u64, len: usize) -> Vec<u8> {
    let mut f = std::fs::File::open(path).expect("open model");
    f.seek(SeekFrom::Start(offset)).expect("seek");
    let mut buf = vec![0u8; len];
    f.read_exact(&mut buf).expect("read range");
    buf
}

fn check(case: &serde_json::Value, raw: &[u8], dtype: DType) {
    let numel = case["numel"].as_u64().expect("numel") as usize;
    let mut out = vec![0f32; numel];
    dequantize(dtype, raw, &mut out).expect("dequantize");
    let le: Vec<u8> = out.iter().flat_map(|v| v.to_le_bytes()).collect();
    let what = format!("{} {} {:?}", case["model"], case["tensor"], case.get("first_block"));
    for (i, want) in case["first_bits"].as_array().expect("first_bits").iter().enumerate() {
        let want = want.as_u64().expect("bits") as u32;
        assert_eq!(out[i].to_bits(), want, "{what}: value {i}: got {} want {}", out[i], f32::from_bits(want));
    }
    assert_eq!(hex_digest(&Sha256::digest(&le)), case["sha256"].as_str().expect("sha"), "{what}: sha256 of output");
}

#[test]
fn dequantize_matches_gguf_python_bit_for_bit() {
    let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/dequant.json");
    let text = std::fs::read_to_string(&golden).expect("golden file");
    let json: serde_json::Value = serde_json::from_str(&text).expect("golden json");
    let cases = json["cases"].as_array().expect("cases");
    let mut models: HashMap<String, Option<PathBuf>> = HashMap::new();
    let mut checked = BTreeSet::new();
    let mut n = 0;
    for case in cases {
        let dtype = dtype_named(case["dtype"].as_str().expect("dtype"));
        let blocks = case["blocks"].as_u64().expect("blocks") as usize;
        let raw = if let Some(hex) = case.get("hex").and_then(|h| h.as_str()) {
            hex_bytes(hex)
        } else {
            let model = case["model"].as_str().expect("model");
            let path = models.entry(model.to_string()).or_insert_with(|| test_model(model));
            let Some(path) = path else { continue };
            read_range(path, case["offset"].as_u64().expect("offset"), blocks * dtype.type_size())
        };
        assert_eq!(raw.len(), blocks * dtype.type_size());
        check(case, &raw, dtype);
        checked.insert(format!("{dtype:?}"));
        n += 1;
    }
    eprintln!("checked {n} golden ranges, types {checked:?}");
    assert!(checked.contains("Q4_0") && checked.contains("Q5_K"), "synthetic cases always run");
    if models.values().all(|p| p.is_some()) {
        for t in ["Q4_0", "Q4_1", "Q5_0", "Q8_0", "Q4_K", "Q5_K", "Q6_K"] {
            assert!(checked.contains(t), "no golden case for {t}");
        }
    }
}

#[test]
fn malformed_input_is_an_error_not_a_panic() {
    for d in DType::ALL.into_iter().filter(|d| d.is_quantized()) {
        let bs = d.block_size();
        let mut out = vec![0f32; bs];
        assert!(dequantize(d, &vec![0u8; d.type_size() - 1], &mut out).is_err(), "{d:?}: short input");
        assert!(dequantize(d, &vec![0u8; d.type_size() + 1], &mut out).is_err(), "{d:?}: long input");
        let mut odd = vec![0f32; bs + 1];
        assert!(dequantize(d, &vec![0u8; 2 * d.type_size()], &mut odd).is_err(), "{d:?}: partial block");
        assert!(dequantize(d, &vec![0u8; d.type_size()], &mut out).is_ok());
    }
}
