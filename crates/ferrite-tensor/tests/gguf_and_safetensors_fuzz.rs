//! Deterministic mutation fuzzing of both model-file parsers, on stable Rust (CI runs it; the
//! coverage-guided cargo-fuzz targets in `fuzz/` need `RUSTC_BOOTSTRAP=1`).
//!
//! Seeds: a small synthetic GGUF / safetensors file, and the real SmolLM2 GGUF header / MiniLM
//! safetensors header (followed by zero bytes standing in for the tensor data). Each seed gets
//! thousands of seeded mutations (bit flips, interesting bytes, huge length fields, type ids,
//! off-by-a-little lengths, digit runs in JSON, truncations, duplicated and deleted regions);
//! every parse must return Ok or Err without panicking, and every tensor of an accepted file
//! must load.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use ferrite_tensor::cpu::{SharedBytes, TensorRead};
use ferrite_tensor::gguf::{GgufFile, GgufValue, GgufWriter};
use ferrite_tensor::model_files::{test_model, MINILM, SMOLLM2};
use ferrite_tensor::safetensors::SafetensorsModel;
use ferrite_tensor::DType;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const INTERESTING: [u64; 20] = [
    0,
    1,
    2,
    3,
    4,
    7,
    8,
    13,
    32,
    255,
    256,
    0x7fff_ffff,
    0xffff_ffff,
    1 << 32,
    1 << 40,
    1 << 50,
    1 << 60,
    i64::MAX as u64,
    u64::MAX - 1,
    u64::MAX,
];

/// Applies 1 to 4 random mutations to `base`, at positions biased towards `hot` ranges (where
/// the structure of the file is: counts, lengths, type ids, offsets).
fn mutate(rng: &mut StdRng, base: &[u8], hot: &[(usize, usize)]) -> Vec<u8> {
    let mut b = base.to_vec();
    for _ in 0..rng.gen_range(1..=4) {
        if b.is_empty() {
            break;
        }
        let pos = match hot.get(rng.gen_range(0..hot.len() + 1)) {
            Some(&(start, end)) if start < end.min(b.len()) => rng.gen_range(start..end.min(b.len())),
            _ => rng.gen_range(0..b.len()),
        };
        let room = b.len() - pos;
        match rng.gen_range(0..10) {
            0 => b[pos] ^= 1 << rng.gen_range(0..8),
            1 => b[pos] = [0, 1, 0x7f, 0x80, 0xff, b'"', b'9'][rng.gen_range(0..7)],
            2 if room >= 8 => {
                let v = INTERESTING[rng.gen_range(0..INTERESTING.len())];
                b[pos..pos + 8].copy_from_slice(&v.to_le_bytes());
            }
            3 if room >= 4 => {
                let v: u32 = if rng.gen_bool(0.7) { rng.gen_range(0..32) } else { rng.gen() };
                b[pos..pos + 4].copy_from_slice(&v.to_le_bytes());
            }
            4 if room >= 8 => {
                let mut v = [0u8; 8];
                v.copy_from_slice(&b[pos..pos + 8]);
                let v = u64::from_le_bytes(v).wrapping_add_signed(rng.gen_range(-40..=40));
                b[pos..pos + 8].copy_from_slice(&v.to_le_bytes());
            }
            5 => b.truncate(pos),
            6 => {
                let len = rng.gen_range(1..=room.min(64));
                let chunk = b[pos..pos + len].to_vec();
                let at = rng.gen_range(0..=b.len());
                b.splice(at..at, chunk);
            }
            7 => {
                let len = rng.gen_range(1..=room.min(64));
                b.drain(pos..pos + len);
            }
            8 => {
                let run: Vec<u8> = (0..rng.gen_range(1..24)).map(|_| rng.gen_range(b'0'..=b'9')).collect();
                let end = pos + room.min(run.len());
                b.splice(pos..end, run);
            }
            _ => b[pos] = rng.gen(),
        }
    }
    b
}

fn shared(v: Vec<u8>) -> SharedBytes {
    Arc::new(v)
}

/// Parses; when the parser accepts the file, checks that everything it lists is usable.
fn check_gguf(bytes: Vec<u8>) -> bool {
    let Ok(f) = GgufFile::from_bytes(shared(bytes)) else { return false };
    assert!(matches!(f.version(), 2 | 3));
    assert!(f.alignment().is_power_of_two() && f.data_offset() % f.alignment() == 0);
    for (k, v) in f.metadata() {
        assert!(f.get(k).is_some(), "{k}");
        let _ = (v.as_u64(), v.as_i64(), v.as_f64(), v.as_bool(), v.as_str(), v.as_str_array());
        let _ = (v.as_f32_array(), v.as_i64_array());
    }
    for info in f.tensor_infos() {
        let t = f.tensor(&info.name).unwrap_or_else(|e| panic!("accepted tensor {} fails: {e}", info.name));
        assert_eq!(TensorRead::new(&t, "fuzz").expect("read").bytes().len(), info.len_bytes);
    }
    true
}

fn check_safetensors(bytes: Vec<u8>) -> bool {
    let Ok(m) = SafetensorsModel::from_bytes(shared(bytes)) else { return false };
    for info in m.tensor_infos() {
        assert_eq!(m.tensor_data(&info.name).map(<[u8]>::len).ok(), Some(info.len_bytes));
        if info.dtype.is_some() {
            let t = m.tensor(&info.name).unwrap_or_else(|e| panic!("accepted tensor {} fails: {e}", info.name));
            assert_eq!(t.len_bytes(), info.len_bytes);
        }
    }
    true
}

fn synthetic_gguf() -> Vec<u8> {
    let f32s: Vec<u8> = (0..8).flat_map(|i| (i as f32).to_le_bytes()).collect();
    GgufWriter::new()
        .metadata("general.architecture", GgufValue::String("llama".into()))
        .metadata("llama.block_count", GgufValue::U32(2))
        .metadata("f", GgufValue::F32(0.5))
        .metadata("b", GgufValue::Bool(true))
        .metadata("toks", GgufValue::Array(vec![GgufValue::String("ab".into()), GgufValue::String("c".into())]))
        .metadata("ids", GgufValue::Array(vec![GgufValue::I64(-1), GgufValue::I64(9)]))
        .metadata("nest", GgufValue::Array(vec![GgufValue::Array(vec![GgufValue::U8(1)])]))
        .tensor("w", DType::F32, [2, 4], &f32s)
        .and_then(|w| w.tensor("q", DType::Q4_0, [2, 32], &[3u8; 36]))
        .and_then(|w| w.tensor("h", DType::F16, [3], &[0u8; 6]))
        .and_then(|w| w.to_bytes())
        .expect("write")
}

#[test]
fn gguf_synthetic_mutations() {
    let base = synthetic_gguf();
    assert!(check_gguf(base.clone()));
    let mut rng = StdRng::seed_from_u64(0x6767_7566);
    let mut accepted = 0;
    for _ in 0..20_000 {
        accepted += usize::from(check_gguf(mutate(&mut rng, &base, &[(0, 24)])));
    }
    // Some mutations (in tensor data, in string bytes) keep the file valid.
    eprintln!("accepted {accepted} mutants");
    assert!(accepted > 100, "{accepted}");
}

#[test]
fn gguf_real_header_mutations() {
    let Some(path) = test_model(SMOLLM2) else { return };
    let f = GgufFile::open(&path).expect("open");
    let header = (**f.bytes()).as_ref()[..f.data_offset()].to_vec();
    let total = (**f.bytes()).as_ref().len();
    // The start (header + first keys) and the tensor infos at the end of the header.
    let hot = [(0, 2048), (header.len().saturating_sub(24_000), header.len())];
    let mut rng = StdRng::seed_from_u64(0x5350_4f4c);
    let mut accepted = 0;
    for _ in 0..300 {
        let h = mutate(&mut rng, &header, &hot);
        // Zeros (calloc'd, so untouched pages cost nothing) stand in for the tensor data.
        let mut file = vec![0u8; total.max(h.len())];
        file[..h.len()].copy_from_slice(&h);
        accepted += usize::from(check_gguf(file));
    }
    eprintln!("accepted {accepted} mutants");
    assert!(accepted > 0);
}

fn synthetic_safetensors() -> Vec<u8> {
    let h = br#"{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"i":{"dtype":"I64","shape":[1],"data_offsets":[16,24]},"h":{"dtype":"BF16","shape":[2],"data_offsets":[24,28]}}"#;
    let mut h = h.to_vec();
    h.resize(h.len().next_multiple_of(8), b' ');
    let mut b = (h.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(&h);
    b.extend((0..28).map(|i| i as u8));
    b
}

#[test]
fn safetensors_synthetic_mutations() {
    let base = synthetic_safetensors();
    assert!(check_safetensors(base.clone()));
    let mut rng = StdRng::seed_from_u64(0x7361_6665);
    let mut accepted = 0;
    for _ in 0..20_000 {
        accepted += usize::from(check_safetensors(mutate(&mut rng, &base, &[(0, 8), (8, base.len() - 28)])));
    }
    eprintln!("accepted {accepted} mutants");
    assert!(accepted > 100, "{accepted}");
}

#[test]
fn safetensors_real_header_mutations() {
    let Some(dir) = test_model(MINILM) else { return };
    let bytes = std::fs::read(dir.join("model.safetensors")).expect("read");
    let mut n = [0u8; 8];
    n.copy_from_slice(&bytes[..8]);
    let header_end = 8 + u64::from_le_bytes(n) as usize;
    let header = &bytes[..header_end];
    let data_len = bytes.len() - header_end;
    let mut rng = StdRng::seed_from_u64(0x6d69_6e69);
    let mut accepted = 0;
    for _ in 0..2_000 {
        let h = mutate(&mut rng, header, &[(0, 8)]);
        let mut file = vec![0u8; h.len() + data_len];
        file[..h.len()].copy_from_slice(&h);
        accepted += usize::from(check_safetensors(file));
    }
    eprintln!("accepted {accepted} mutants");
    assert!(accepted > 0);
}
