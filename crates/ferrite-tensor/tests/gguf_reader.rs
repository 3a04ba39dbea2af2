//! The GGUF reader against the real test models, checked with a golden index written by an
//! independent reference (gguf-py's `GGUFReader`, `scripts/golden_gguf_index.py`).

#![allow(clippy::unwrap_used)]

use ferrite_tensor::cpu::TensorRead;
use ferrite_tensor::gguf::{GgufFile, GgufValue};
use ferrite_tensor::model_files::{test_model, GEMMA3, QWEN25, SMOLLM2};
use ferrite_tensor::{DType, Error};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn sha256(b: &[u8]) -> String {
    Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

fn golden(key: &str) -> Value {
    let path = format!("{}/tests/golden/gguf_{key}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn type_name(v: &GgufValue) -> &'static str {
    match v {
        GgufValue::U8(_) => "UINT8",
        GgufValue::I8(_) => "INT8",
        GgufValue::U16(_) => "UINT16",
        GgufValue::I16(_) => "INT16",
        GgufValue::U32(_) => "UINT32",
        GgufValue::I32(_) => "INT32",
        GgufValue::U64(_) => "UINT64",
        GgufValue::I64(_) => "INT64",
        GgufValue::F32(_) => "FLOAT32",
        GgufValue::F64(_) => "FLOAT64",
        GgufValue::Bool(_) => "BOOL",
        GgufValue::String(_) => "STRING",
        GgufValue::Array(_) => "ARRAY",
    }
}

fn check_scalar(key: &str, v: &GgufValue, g: &Value) {
    match v {
        GgufValue::String(s) => match g.get("value") {
            Some(gv) => assert_eq!(Some(s.as_str()), gv.as_str(), "{key}"),
            None => {
                assert_eq!(s.len() as u64, g["len"].as_u64().unwrap_or(0), "{key} length");
                assert_eq!(sha256(s.as_bytes()), g["sha256"].as_str().unwrap_or(""), "{key} sha256");
            }
        },
        GgufValue::Bool(b) => assert_eq!(Some(*b), g["value"].as_bool(), "{key}"),
        GgufValue::F32(_) | GgufValue::F64(_) => assert_eq!(v.as_f64(), g["value"].as_f64(), "{key}"),
        _ => assert_eq!(v.as_i64(), g["value"].as_i64(), "{key}"),
    }
}

fn check_array(key: &str, items: &[GgufValue], g: &Value) {
    assert_eq!(items.len() as u64, g["len"].as_u64().unwrap_or(u64::MAX), "{key} length");
    if let Some(first) = items.first() {
        assert_eq!(Some(type_name(first)), g["item_type"].as_str(), "{key} item type");
    }
    let arr = GgufValue::Array(items.to_vec());
    match g["item_type"].as_str() {
        Some("STRING") => {
            let s = arr.as_str_array().unwrap_or_else(|| panic!("{key}: not all strings"));
            let head: Vec<&str> = g["head"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            assert_eq!(&s[..head.len()], &head[..], "{key} head");
            assert_eq!(sha256(s.join("\n").as_bytes()), g["sha256"].as_str().unwrap_or(""), "{key} sha256");
        }
        Some("FLOAT32") | Some("FLOAT64") => {
            let f: Vec<f64> = items.iter().filter_map(GgufValue::as_f64).collect();
            assert_eq!(f.len(), items.len(), "{key}");
            let head: Vec<f64> = g["head"].as_array().into_iter().flatten().filter_map(Value::as_f64).collect();
            assert_eq!(&f[..head.len()], &head[..], "{key} head");
            let sum: f64 = f.iter().sum();
            let want = g["sum"].as_f64().unwrap_or(f64::NAN);
            assert!((sum - want).abs() <= 1e-6 * want.abs().max(1.0), "{key} sum {sum} vs {want}");
        }
        Some(_) => {
            let ints = arr.as_i64_array().unwrap_or_else(|| panic!("{key}: not all integers"));
            let head: Vec<i64> = g["head"].as_array().into_iter().flatten().filter_map(Value::as_i64).collect();
            assert_eq!(&ints[..head.len()], &head[..], "{key} head");
            assert_eq!(Some(ints.iter().sum::<i64>()), g["sum"].as_i64(), "{key} sum");
        }
        None => assert!(items.is_empty()),
    }
}

fn check_model(file: &str, key: &str) {
    let Some(path) = test_model(file) else { return };
    let g = golden(key);
    let f = GgufFile::open(&path).expect("open");
    assert_eq!(u64::from(f.version()), g["version"].as_u64().unwrap_or(0));
    assert_eq!(f.alignment() as u64, g["alignment"].as_u64().unwrap_or(0));
    assert_eq!(f.data_offset() as u64, g["data_offset"].as_u64().unwrap_or(0));

    // Metadata: same keys in the same order, same values.
    let keys: Vec<&str> = f.metadata().map(|(k, _)| k).collect();
    let gkeys: Vec<&str> = g["metadata_keys"].as_array().expect("keys").iter().filter_map(Value::as_str).collect();
    assert_eq!(keys, gkeys);
    for (k, v) in f.metadata() {
        let gv = &g["metadata"][k];
        assert_eq!(Some(type_name(v)), gv["type"].as_str(), "{k} type");
        match v {
            GgufValue::Array(items) => check_array(k, items, gv),
            _ => check_scalar(k, v, gv),
        }
        assert!(std::ptr::eq(f.get(k).expect("get"), v));
    }

    // Tensor infos: names, dtypes, shapes, absolute offsets and lengths, in file order.
    let gt = g["tensors"].as_array().expect("tensors");
    assert_eq!(f.tensor_infos().len(), gt.len());
    for (t, want) in f.tensor_infos().iter().zip(gt) {
        assert_eq!(Some(t.name.as_str()), want[0].as_str());
        assert_eq!(Some(format!("{:?}", t.dtype).as_str()), want[1].as_str(), "{}", t.name);
        let shape: Vec<usize> =
            want[2].as_array().expect("shape").iter().filter_map(Value::as_u64).map(|d| d as usize).collect();
        assert_eq!(t.shape.dims(), &shape[..], "{}", t.name);
        assert_eq!(Some(t.offset as u64), want[3].as_u64(), "{}", t.name);
        assert_eq!(Some(t.len_bytes as u64), want[4].as_u64(), "{}", t.name);
        assert_eq!(f.tensor_info(&t.name), Some(t));
    }

    // Data: zero-copy tensors see the same bytes as the reference.
    for (name, want) in g["data_sha256_first64"].as_object().expect("sha") {
        let t = f.tensor(name).expect("tensor");
        let info = f.tensor_info(name).expect("info");
        assert_eq!(t.dtype(), info.dtype);
        assert_eq!(t.shape(), &info.shape);
        assert_eq!(t.len_bytes(), info.len_bytes);
        let r = TensorRead::new(&t, "test").expect("read");
        let n = r.bytes().len().min(64);
        assert_eq!(sha256(&r.bytes()[..n]), want.as_str().unwrap_or(""), "{name}");
        assert_eq!(f.tensor_data(name).expect("data")[..n], r.bytes()[..n]);
    }
    assert!(matches!(f.tensor("no.such.tensor"), Err(Error::TensorNotFound(_))));
}

#[test]
fn smollm2_matches_reference() {
    check_model(SMOLLM2, "smollm2");
}

#[test]
fn qwen25_matches_reference() {
    check_model(QWEN25, "qwen25");
}

#[test]
fn gemma3_matches_reference() {
    check_model(GEMMA3, "gemma3");
}

#[test]
fn smollm2_typed_accessors() {
    let Some(path) = test_model(SMOLLM2) else { return };
    let f = GgufFile::open(path).expect("open");
    assert_eq!(f.architecture(), Some("llama"));
    assert_eq!(f.get("llama.block_count").and_then(GgufValue::as_u64), Some(30));
    assert_eq!(f.get("llama.embedding_length").and_then(GgufValue::as_u64), Some(576));
    assert_eq!(f.get("llama.rope.freq_base").and_then(GgufValue::as_f32), Some(100000.0));
    let tokens = f.get("tokenizer.ggml.tokens").and_then(GgufValue::as_str_array).expect("tokens");
    assert_eq!(tokens.len(), 49152);
    assert_eq!(tokens[0], "<|endoftext|>");
    let merges = f.get("tokenizer.ggml.merges").and_then(GgufValue::as_str_array).expect("merges");
    assert!(merges.len() > 40_000, "{}", merges.len());
    let types = f.get("tokenizer.ggml.token_type").and_then(GgufValue::as_i64_array).expect("types");
    assert_eq!(types.len(), tokens.len());
    // ggml's [576 x 49152] embedding matrix is [49152, 576] row-major.
    let emb = f.tensor_info("token_embd.weight").expect("embd");
    assert_eq!(emb.shape.dims(), &[49152, 576]);
    assert_eq!(emb.dtype, DType::Q8_0);
    let q = f.tensor("blk.0.attn_q.weight").expect("q");
    assert_eq!(q.dims(), &[576, 576]);
    assert_eq!(q.dtype(), DType::Q4_1);
}
