//! One test per class of malformed GGUF input: each must give the specific typed error (never a
//! panic, a hang or a huge allocation), and a few well-formed edge cases must parse.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use ferrite_tensor::cpu::SharedBytes;
use ferrite_tensor::gguf::{GgufFile, GgufValue, GgufWriter};
use ferrite_tensor::{DType, Error};

/// A GGUF byte builder that can write anything, including lies.
struct Raw(Vec<u8>);

impl Raw {
    fn header(version: u32, n_tensors: u64, n_kv: u64) -> Raw {
        let mut r = Raw(b"GGUF".to_vec());
        r.u32(version).u64(n_tensors).u64(n_kv);
        r
    }
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn str(&mut self, s: &[u8]) -> &mut Self {
        self.u64(s.len() as u64);
        self.0.extend_from_slice(s);
        self
    }
    fn kv_u32(&mut self, key: &str, v: u32) -> &mut Self {
        self.str(key.as_bytes()).u32(4).u32(v)
    }
    fn tensor(&mut self, name: &str, ne: &[u64], ty: u32, offset: u64) -> &mut Self {
        self.str(name.as_bytes()).u32(ne.len() as u32);
        for &d in ne {
            self.u64(d);
        }
        self.u32(ty).u64(offset)
    }
    /// Pads to the data section (alignment 32) and appends `n` data bytes.
    fn data(&mut self, n: usize) -> &mut Self {
        self.0.resize(self.0.len().next_multiple_of(32), 0);
        self.0.resize(self.0.len() + n, 0x11);
        self
    }
    fn parse(&self) -> ferrite_tensor::Result<GgufFile> {
        parse(self.0.clone())
    }
}

fn parse(bytes: Vec<u8>) -> ferrite_tensor::Result<GgufFile> {
    let shared: SharedBytes = Arc::new(bytes);
    GgufFile::from_bytes(shared)
}

/// The reason of a `Malformed { format: "gguf" }` error, checked to mention `needle`.
#[track_caller]
fn malformed(r: ferrite_tensor::Result<GgufFile>, needle: &str) {
    match r {
        Err(Error::Malformed { format: "gguf", reason }) => {
            assert!(reason.contains(needle), "reason `{reason}` lacks `{needle}`")
        }
        other => panic!("expected Malformed gguf ({needle}), got {other:?}"),
    }
}

fn valid() -> Vec<u8> {
    let f32s: Vec<u8> = (0..8).flat_map(|i| (i as f32).to_le_bytes()).collect();
    GgufWriter::new()
        .metadata("general.architecture", GgufValue::String("llama".into()))
        .metadata("n", GgufValue::U32(7))
        .metadata("toks", GgufValue::Array(vec![GgufValue::String("a".into()), GgufValue::String("b".into())]))
        .tensor("w", DType::F32, [2, 4], &f32s)
        .and_then(|w| w.tensor("q", DType::Q8_0, [1, 32], &[0u8; 34]))
        .and_then(|w| w.to_bytes())
        .expect("write")
}

#[test]
fn valid_synthetic_round_trip() {
    let f = parse(valid()).expect("parse");
    assert_eq!((f.version(), f.alignment(), f.architecture()), (3, 32, Some("llama")));
    assert_eq!(f.get("toks").and_then(GgufValue::as_str_array), Some(vec!["a", "b"]));
    let w = f.tensor("w").expect("w");
    assert_eq!(w.dims(), &[2, 4]);
    assert_eq!(w.to_vec_f32().expect("f32"), (0..8).map(|i| i as f32).collect::<Vec<_>>());
    assert_eq!(f.tensor_info("q").map(|t| (t.dtype, t.len_bytes)), Some((DType::Q8_0, 34)));
    assert_eq!(f.tensor_info("q").map(|t| t.offset % 32), Some(0));
    assert_eq!(f.data_offset() % 32, 0);
}

#[test]
fn version_2_and_custom_alignment_accepted() {
    let b = GgufWriter::new()
        .version(2)
        .metadata("general.alignment", GgufValue::U32(64))
        .tensor("t", DType::F16, [3], &[0; 6])
        .and_then(|w| w.to_bytes())
        .expect("write");
    let f = parse(b).expect("v2");
    assert_eq!((f.version(), f.alignment(), f.data_offset() % 64), (2, 64, 0));
    // No tensors and no metadata at all is a valid (empty) file.
    assert_eq!(Raw::header(3, 0, 0).parse().expect("empty").tensor_infos().len(), 0);
}

#[test]
fn truncated_anywhere() {
    let good = valid();
    // Everything up to the end of the last tensor's data is needed (trailing padding is not).
    let f = parse(good.clone()).expect("parse");
    let end = f.tensor_infos().iter().map(|t| t.offset + t.len_bytes).max().unwrap_or(0);
    assert_eq!(end, good.len() - 30);
    assert!(parse(good[..end].to_vec()).is_ok());
    for len in 0..end {
        let r = parse(good[..len].to_vec());
        assert!(matches!(r, Err(Error::Malformed { format: "gguf", .. })), "prefix {len}: {r:?}");
    }
    malformed(parse(good[..10].to_vec()), "truncated");
    malformed(parse(good[..end - 1].to_vec()), "outside the file");
}

#[test]
fn wrong_magic() {
    let mut b = valid();
    b[0] = b'g';
    malformed(parse(b), "bad magic");
    malformed(parse(b"GGML\x03\0\0\0".to_vec()), "bad magic");
}

#[test]
fn unsupported_versions() {
    malformed(Raw::header(1, 0, 0).parse(), "version 1 is not supported");
    malformed(Raw::header(4, 0, 0).parse(), "unsupported GGUF version 4");
    malformed(Raw::header(0, 0, 0).parse(), "unsupported GGUF version 0");
    malformed(Raw::header(3u32.swap_bytes(), 0, 0).parse(), "big-endian");
}

#[test]
fn bad_utf8() {
    malformed(Raw::header(3, 0, 1).str(b"k\xff").u32(4).u32(1).parse(), "UTF-8");
    malformed(Raw::header(3, 0, 1).str(b"k").u32(8).str(b"\xc3\x28").parse(), "UTF-8");
    let mut r = Raw::header(3, 1, 0);
    r.str(b"\xe2\x82").u32(1).u64(4).u32(0).u64(0).data(16);
    malformed(r.parse(), "UTF-8");
}

#[test]
fn unknown_value_types() {
    malformed(Raw::header(3, 0, 1).str(b"k").u32(13).u32(0).parse(), "unknown value type 13");
    malformed(Raw::header(3, 0, 1).str(b"k").u32(u32::MAX).u32(0).parse(), "unknown value type");
    // Inside an array.
    malformed(Raw::header(3, 0, 1).str(b"k").u32(9).u32(42).u64(1).u32(0).parse(), "unknown value type 42");
    malformed(Raw::header(3, 0, 1).str(b"k").u32(7).u8(2).parse(), "bool 2");
}

#[test]
fn unknown_tensor_types() {
    for ty in [7u32, 16, 99, u32::MAX] {
        let mut r = Raw::header(3, 1, 0);
        r.tensor("t", &[32], ty, 0).data(64);
        match r.parse() {
            Err(Error::UnknownDType { format: "gguf", id }) => assert!(id.starts_with(&ty.to_string()), "{id}"),
            other => panic!("type {ty}: {other:?}"),
        }
    }
}

#[test]
fn offsets_not_aligned() {
    let mut r = Raw::header(3, 1, 0);
    r.tensor("t", &[4], 0, 4).data(64);
    malformed(r.parse(), "not a multiple of the alignment 32");
}

#[test]
fn data_out_of_range_or_overflowing() {
    let mut r = Raw::header(3, 1, 0);
    r.tensor("t", &[16], 0, 0).data(63);
    malformed(r.parse(), "outside the file");
    for off in [u64::MAX - 31, 1 << 62, (i64::MAX as u64) & !31] {
        let mut r = Raw::header(3, 1, 0);
        r.tensor("t", &[16], 0, off).data(64);
        malformed(r.parse(), "outside the file");
    }
    // Element count times type size overflows; element count itself overflows.
    let mut r = Raw::header(3, 1, 0);
    r.tensor("t", &[1 << 31, 1 << 31], 0, 0).data(64);
    malformed(r.parse(), "overflows");
    let mut r = Raw::header(3, 1, 0);
    r.tensor("t", &[1 << 40, 1 << 40], 0, 0).data(64);
    malformed(r.parse(), "overflows");
    let mut r = Raw::header(3, 1, 0);
    r.tensor("t", &[u64::MAX], 0, 0).data(64);
    malformed(r.parse(), "dimension");
}

#[test]
fn overlapping_tensors() {
    let mut r = Raw::header(3, 2, 0);
    r.tensor("a", &[16], 0, 0).tensor("b", &[16], 0, 32).data(128);
    malformed(r.parse(), "overlap");
    let mut r = Raw::header(3, 2, 0);
    r.tensor("a", &[16], 0, 64).tensor("b", &[16], 0, 32).data(128);
    malformed(r.parse(), "overlap");
    // Empty tensors overlap nothing.
    let mut r = Raw::header(3, 2, 0);
    r.tensor("a", &[0], 0, 0).tensor("b", &[8], 0, 0).data(32);
    assert_eq!(r.parse().expect("empty tensor").tensor_infos().len(), 2);
}

#[test]
fn too_many_dims() {
    let mut r = Raw::header(3, 1, 0);
    r.tensor("t", &[1, 1, 1, 1, 32], 0, 0).data(128);
    malformed(r.parse(), "5 dims");
    let mut r = Raw::header(3, 1, 0);
    r.str(b"t").u32(u32::MAX).data(64);
    malformed(r.parse(), "dims");
}

#[test]
fn row_not_whole_blocks() {
    let mut r = Raw::header(3, 1, 0);
    r.tensor("q", &[16, 2], DType::Q8_0.gguf_id(), 0).data(128);
    malformed(r.parse(), "block size");
}

#[test]
fn duplicate_names() {
    malformed(Raw::header(3, 0, 2).kv_u32("k", 1).kv_u32("k", 2).parse(), "duplicate metadata key `k`");
    let mut r = Raw::header(3, 2, 0);
    r.tensor("t", &[8], 0, 0).tensor("t", &[8], 0, 32).data(64);
    malformed(r.parse(), "duplicate tensor name `t`");
}

#[test]
fn absurd_counts_and_lengths() {
    malformed(Raw::header(3, 0, 1 << 60).parse(), "metadata count");
    malformed(Raw::header(3, 1 << 60, 0).parse(), "tensor count");
    malformed(Raw::header(3, u64::MAX, u64::MAX).parse(), "tensor count");
    malformed(Raw::header(3, 0, 1).u64(1 << 40).data(32).parse(), "metadata key");
    malformed(Raw::header(3, 0, 1).str(b"k").u32(8).u64(1 << 40).parse(), "impossible");
    malformed(Raw::header(3, 0, 1).str(b"k").u32(9).u32(0).u64(1 << 50).parse(), "array length");
    malformed(Raw::header(3, 0, 1).str(b"k").u32(9).u32(9).u64(u64::MAX).parse(), "array length");
    malformed(Raw::header(3, 1, 0).u64(u64::MAX).data(32).parse(), "tensor name");
}

#[test]
fn deeply_nested_arrays() {
    let mut r = Raw::header(3, 0, 1);
    r.str(b"k").u32(9);
    for _ in 0..1000 {
        r.u32(9).u64(1);
    }
    r.u32(0).u64(0);
    malformed(r.parse(), "nested deeper");
    // Moderate nesting is fine.
    let mut r = Raw::header(3, 0, 1);
    r.str(b"k").u32(9).u32(9).u64(1).u32(4).u64(2).u32(5).u32(6);
    let f = r.parse().expect("nested");
    let inner = f.get("k").and_then(GgufValue::as_array).and_then(|a| a[0].as_i64_array());
    assert_eq!(inner, Some(vec![5, 6]));
}

#[test]
fn bad_alignment() {
    for (v, needle) in [(0u32, "power of two"), (3, "power of two"), (48, "power of two")] {
        malformed(Raw::header(3, 0, 1).kv_u32("general.alignment", v).parse(), needle);
    }
    malformed(Raw::header(3, 0, 1).str(b"general.alignment").u32(10).u64(32).parse(), "expected U32");
}

#[test]
fn missing_tensor_and_missing_file() {
    let f = parse(valid()).expect("parse");
    assert!(matches!(f.tensor("nope"), Err(Error::TensorNotFound(n)) if n == "nope"));
    assert!(matches!(f.tensor_data("nope"), Err(Error::TensorNotFound(_))));
    assert!(matches!(GgufFile::open("/nonexistent/x.gguf"), Err(Error::Io { .. })));
}
