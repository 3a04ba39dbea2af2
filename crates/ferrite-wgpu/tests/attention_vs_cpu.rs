//! The KV-cache write (bit-equal) and paged attention against the CPU backend. Tolerances, of
//! the largest value: 1e-4 with f32 caches (exp and sums in another order); 2e-3 with f16 caches,
//! where the CPU mirrors ggml's flash attention (query rounded to f16, running output kept in
//! f16) and the GPU accumulates in f32 over the same f16 cache values.

#![allow(clippy::unwrap_used)]

use ferrite_tensor::{AttentionParams, AttentionSeq, DType, Device, Tensor};

mod common;

use common::{gpu, random};

fn max_diff(a: &Tensor, b: &Tensor) -> (f32, f32) {
    let (a, b) = (a.to_vec_f32().unwrap(), b.to_vec_f32().unwrap());
    assert_eq!(a.len(), b.len());
    let peak = a.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    (a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max), peak)
}

#[test]
fn kv_writes_and_paged_attention_match_the_cpu() {
    let Some(g) = gpu() else { return };
    let cpu = Device::cpu();
    let (hq, hk, d, bs) = (6, 2, 64, 4);
    let slots = 16 * bs;
    for dtype in [DType::F32, DType::F16] {
        let kc = Tensor::zeros(vec![slots, hk, d], dtype, &cpu).unwrap();
        let vc = Tensor::zeros(vec![slots, hk, d], dtype, &cpu).unwrap();
        let (kg, vg) = (kc.to_device(g).unwrap(), vc.to_device(g).unwrap());
        // Two sequences in scattered blocks: one with 13 positions, one with 6.
        let tables = [vec![5u32, 2, 9, 14], vec![7u32, 0]];
        let lens = [13usize, 6];
        let mut all_slots = Vec::new();
        for (t, &n) in tables.iter().zip(&lens) {
            all_slots.extend((0..n).map(|p| t[p / bs] * bs as u32 + (p % bs) as u32));
        }
        let rows = all_slots.len();
        let k = Tensor::from_f32(&random(rows * hk * d, 1, 1.0), vec![rows, hk, d], &cpu).unwrap();
        let v = Tensor::from_f32(&random(rows * hk * d, 2, 1.0), vec![rows, hk, d], &cpu).unwrap();
        kc.write_kv(&k, &all_slots).unwrap();
        vc.write_kv(&v, &all_slots).unwrap();
        kg.write_kv(&k.to_device(g).unwrap(), &all_slots).unwrap();
        vg.write_kv(&v.to_device(g).unwrap(), &all_slots).unwrap();
        assert_eq!(kc.to_bytes().unwrap(), kg.to_bytes().unwrap(), "{dtype:?} k cache after write_kv");
        assert_eq!(vc.to_bytes().unwrap(), vg.to_bytes().unwrap(), "{dtype:?} v cache after write_kv");
        assert!(kg.write_kv(&k.to_device(g).unwrap().narrow_rows(0, 1).unwrap(), &[slots as u32]).is_err());

        // Prefill of the first sequence's last 5 positions and decode of the second's last one.
        let seqs = [
            AttentionSeq { q_start: 0, q_len: 5, kv_len: 13, block_table: tables[0].clone() },
            AttentionSeq { q_start: 5, q_len: 1, kv_len: 6, block_table: tables[1].clone() },
        ];
        // Row 6 belongs to no sequence: zeros, as on the CPU.
        let q = Tensor::from_f32(&random(7 * hq * d, 3, 1.0), vec![7, hq, d], &cpu).unwrap();
        let qg = q.to_device(g).unwrap();
        for (window, softcap) in [(None, None), (Some(4), None), (None, Some(2.0))] {
            let params = AttentionParams { scale: 0.125, block_size: bs, sliding_window: window, softcap };
            let c = q.attention(&kc, &vc, &seqs, &params).unwrap();
            let gg = qg.attention(&kg, &vg, &seqs, &params).unwrap();
            let (worst, peak) = max_diff(&c, &gg);
            let tol = if dtype == DType::F16 { 2e-3 } else { 1e-4 };
            assert!(worst <= tol * peak, "{dtype:?} window {window:?} softcap {softcap:?}: {worst:e} of {peak}");
            assert!(gg.to_vec_f32().unwrap()[6 * hq * d..].iter().all(|&x| x == 0.0), "the row of no sequence");
        }
    }
}
