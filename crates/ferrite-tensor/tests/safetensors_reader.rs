//! The safetensors reader: the real MiniLM checkpoint against a golden index written by the
//! reference `safetensors` python package (`scripts/golden_safetensors.py`), sharded indexes,
//! and one test per class of malformed input.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;

use ferrite_tensor::cpu::{SharedBytes, TensorRead};
use ferrite_tensor::model_files::{test_model, MINILM};
use ferrite_tensor::safetensors::SafetensorsModel;
use ferrite_tensor::{DType, Error};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn sha256(b: &[u8]) -> String {
    Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

/// A tiny safetensors writer: (name, dtype, shape, data) in order, header padded to 8 bytes.
fn write_st(tensors: &[(&str, &str, &[usize], &[u8])]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
    let mut off = 0;
    for (name, dtype, shape, data) in tensors {
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [off, off + data.len()]}),
        );
        off += data.len();
    }
    let mut h = serde_json::to_vec(&Value::Object(header)).expect("json");
    h.resize(h.len().next_multiple_of(8), b' ');
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    for (_, _, _, data) in tensors {
        out.extend_from_slice(data);
    }
    out
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn small() -> Vec<u8> {
    let a = f32_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let b = [7u8, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0];
    write_st(&[("a", "F32", &[2, 3], &a), ("ids", "I64", &[2], &b), ("h", "F16", &[2], &[0, 0x3c, 0, 0x40])])
}

fn from(bytes: Vec<u8>) -> ferrite_tensor::Result<SafetensorsModel> {
    let shared: SharedBytes = Arc::new(bytes);
    SafetensorsModel::from_bytes(shared)
}

fn malformed(r: ferrite_tensor::Result<SafetensorsModel>) -> String {
    match r {
        Err(Error::Malformed { format: "safetensors", reason }) => reason,
        other => panic!("expected Malformed safetensors, got {other:?}"),
    }
}

/// A fresh, empty temporary folder for one test.
fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ferrite-st-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("mkdir");
    d
}

#[test]
fn minilm_matches_reference() {
    let Some(dir) = test_model(MINILM) else { return };
    let path = format!("{}/tests/golden/safetensors_minilm.json", env!("CARGO_MANIFEST_DIR"));
    let g: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("golden")).expect("json");
    // A folder resolves to its model.safetensors.
    let m = SafetensorsModel::open(&dir).expect("open");
    let want = g["tensors"].as_array().expect("tensors");
    assert_eq!(m.len(), want.len());
    for (name, w) in m.names().zip(want) {
        assert_eq!(Some(name), w[0].as_str());
        let info = m.tensor_info(name).expect("info");
        assert_eq!(Some(info.dtype_name.as_str()), w[1].as_str(), "{name}");
        let shape: Vec<usize> =
            w[2].as_array().expect("shape").iter().filter_map(Value::as_u64).map(|d| d as usize).collect();
        assert_eq!(info.shape.dims(), &shape[..], "{name}");
        assert_eq!(m.tensor_data(name).expect("data").len(), info.len_bytes);
    }
    assert_eq!(m.metadata().and_then(|md| md.get("format")).map(String::as_str), Some("pt"));

    for (name, v) in g["values"].as_object().expect("values") {
        let t = m.tensor(name).expect("tensor");
        assert_eq!(t.dtype(), DType::F32);
        let r = TensorRead::new(&t, "test").expect("read");
        assert_eq!(sha256(r.bytes()), v["sha256"].as_str().unwrap_or(""), "{name}");
        let vals = r.f32().expect("aligned f32");
        let first: Vec<f32> =
            v["first"].as_array().expect("first").iter().filter_map(Value::as_f64).map(|x| x as f32).collect();
        assert_eq!(&vals[..first.len()], &first[..], "{name}");
        let sum: f64 = vals.iter().map(|&x| f64::from(x)).sum();
        let want = v["sum"].as_f64().unwrap_or(f64::NAN);
        assert!((sum - want).abs() <= 1e-6 * want.abs().max(1.0), "{name}: {sum} vs {want}");
        assert_eq!(t.to_vec_f32().expect("to_vec")[..first.len()], first[..]);
    }

    // The int64 position_ids are listed, but do not load.
    let (dtype, shape) = m.dtype_and_shape("embeddings.position_ids").expect("listed");
    assert!(matches!(dtype, Err(Error::UnknownDType { format: "safetensors", .. })));
    assert_eq!(shape.dims(), &[1, 512]);
    assert!(matches!(m.tensor("embeddings.position_ids"), Err(Error::UnknownDType { .. })));
    assert!(matches!(m.tensor("nope"), Err(Error::TensorNotFound(_))));

    // The file path itself opens the same.
    let file = SafetensorsModel::open(dir.join("model.safetensors")).expect("open file");
    assert_eq!(file.names().collect::<Vec<_>>(), m.names().collect::<Vec<_>>());
}

#[test]
fn in_memory_file() {
    let m = from(small()).expect("parse");
    assert_eq!(m.names().collect::<Vec<_>>(), ["a", "ids", "h"]);
    let a = m.tensor("a").expect("a");
    assert_eq!(a.dims(), &[2, 3]);
    assert_eq!(a.to_vec_f32().expect("f32"), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let h = m.tensor("h").expect("h");
    assert_eq!(h.dtype(), DType::F16);
    assert_eq!(h.to_vec_f32().expect("f16"), [1.0, 2.0]);
    let (d, s) = m.dtype_and_shape("a").expect("a");
    assert_eq!(d.expect("dtype"), DType::F32);
    assert_eq!(s.dims(), &[2, 3]);
    assert_eq!(m.tensor_data("ids").expect("ids")[0], 7);
    assert!(matches!(m.tensor("ids"), Err(Error::UnknownDType { .. })));
}

#[test]
fn misaligned_float_data_is_copied_not_rejected() {
    // An unpadded header puts the f32 data at an odd offset.
    let mut h = br#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#.to_vec();
    if (8 + h.len()).is_multiple_of(4) {
        h.push(b' ');
    }
    let mut bytes = (h.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(&h);
    bytes.extend_from_slice(&f32_bytes(&[1.5, -2.0]));
    let t = from(bytes).expect("parse").tensor("a").expect("tensor");
    assert_eq!(t.to_vec_f32().expect("f32"), [1.5, -2.0]);
}

#[test]
fn sharded_index() {
    let dir = temp_dir("sharded");
    let a = f32_bytes(&[1.0, 2.0]);
    let b = f32_bytes(&[3.0, 4.0, 5.0]);
    std::fs::write(dir.join("model-00001-of-00002.safetensors"), write_st(&[("x.a", "F32", &[2], &a)])).expect("w");
    std::fs::write(
        dir.join("model-00002-of-00002.safetensors"),
        write_st(&[("x.b", "F32", &[3], &b), ("extra", "F32", &[1], &a[..4])]),
    )
    .expect("w");
    let index = serde_json::json!({"metadata": {"total_size": 24}, "weight_map": {
        "x.b": "model-00002-of-00002.safetensors", "x.a": "model-00001-of-00002.safetensors"}});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).expect("w");
    // A folder with an index opens the index; so does the index path.
    for p in [dir.clone(), dir.join("model.safetensors.index.json")] {
        let m = SafetensorsModel::open(&p).expect("open");
        assert_eq!(m.names().collect::<Vec<_>>(), ["x.a", "x.b"]);
        assert_eq!(m.tensor("x.b").expect("b").to_vec_f32().expect("f32"), [3.0, 4.0, 5.0]);
        assert_eq!(m.tensor_info("x.b").expect("info").shard, 1);
        assert_eq!(m.shard_paths().count(), 2);
    }

    // Shard missing -> Io error naming it.
    let bad = serde_json::json!({"weight_map": {"x.a": "missing.safetensors"}});
    std::fs::write(dir.join("missing.json"), bad.to_string()).expect("w");
    match SafetensorsModel::open(dir.join("missing.json")) {
        Err(Error::Io { path, source }) => {
            assert!(path.ends_with("missing.safetensors"), "{path}");
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("{other:?}"),
    }
    // A name in the index that its shard does not hold.
    let bad = serde_json::json!({"weight_map": {"x.zzz": "model-00001-of-00002.safetensors"}});
    std::fs::write(dir.join("absent.json"), bad.to_string()).expect("w");
    assert!(malformed(SafetensorsModel::open(dir.join("absent.json"))).contains("x.zzz"));
    // Shard paths must stay inside the folder.
    for evil in ["../model-00001-of-00002.safetensors", "/etc/passwd", ""] {
        let bad = serde_json::json!({"weight_map": {"x.a": evil}});
        std::fs::write(dir.join("evil.json"), bad.to_string()).expect("w");
        assert!(malformed(SafetensorsModel::open(dir.join("evil.json"))).contains("plain relative"));
    }
    // Bad index JSON, and an index without a weight_map.
    std::fs::write(dir.join("broken.json"), "{\"weight_map\": {").expect("w");
    malformed(SafetensorsModel::open(dir.join("broken.json")));
    std::fs::write(dir.join("nomap.json"), "{\"metadata\": {}}").expect("w");
    malformed(SafetensorsModel::open(dir.join("nomap.json")));
    // A corrupt shard names the shard.
    std::fs::write(dir.join("model-00001-of-00002.safetensors"), b"\x02\0\0\0\0\0\0\0{}x").expect("w");
    let reason = malformed(SafetensorsModel::open(&dir));
    assert!(reason.contains("model-00001-of-00002.safetensors"), "{reason}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn folder_without_checkpoint_and_missing_file() {
    let dir = temp_dir("empty");
    assert!(matches!(SafetensorsModel::open(&dir), Err(Error::Io { .. })));
    assert!(matches!(SafetensorsModel::open(dir.join("none.safetensors")), Err(Error::Io { .. })));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn truncated_file() {
    let good = small();
    for len in [0, 4, 7, 8, 20, good.len() - 1] {
        malformed(from(good[..len].to_vec()));
    }
    // Trailing garbage is as wrong as missing bytes.
    let mut long = good.clone();
    long.push(0);
    malformed(from(long));
}

#[test]
fn bad_json_header() {
    let mut b = small();
    b[8] = b'[';
    malformed(from(b));
    let h = b"{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}";
    let mut b = (h.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(h);
    b.extend_from_slice(&[0; 4]);
    malformed(from(b));
    // Not UTF-8, and an unknown dtype name.
    let mut b = small();
    b[9] = 0xff;
    malformed(from(b));
    malformed(from(write_st(&[("a", "F7", &[1], &[0])])));
}

#[test]
fn absurd_header_length() {
    for n in [u64::MAX, 1 << 40, 100_000_001, 1 << 20] {
        let mut b = small();
        b[..8].copy_from_slice(&n.to_le_bytes());
        malformed(from(b));
    }
}

#[test]
fn offsets_outside_data_or_inconsistent() {
    // The header promises 16 bytes of data; the file holds 8.
    let h = br#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#;
    let mut b = (h.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(h);
    b.extend_from_slice(&[0; 8]);
    malformed(from(b));
    // Reversed, overlapping, gap, and overflowing offsets; size not matching the shape.
    for (s, e) in [(8, 0), (4, 8), (0, 4), (0, usize::MAX), (usize::MAX - 3, 4)] {
        malformed(from(bad_offsets(s, e)));
    }
    let huge = write_st(&[("a", "F32", &[usize::MAX / 2, 4], &[0u8; 8])]);
    malformed(from(huge));
}

/// One 2-element F32 tensor with the given data offsets, over 8 bytes of data.
fn bad_offsets(s: usize, e: usize) -> Vec<u8> {
    let h = format!("{{\"a\":{{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[{s},{e}]}}}}");
    let mut b = (h.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(h.as_bytes());
    b.extend_from_slice(&[0; 8]);
    b
}
