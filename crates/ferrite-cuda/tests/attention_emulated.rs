//! The three paths of paged attention (`kernels/attention.cu`), run on the emulator (and on a
//! real GPU when the machine has one) against the CPU backend: long decode rows whose keys are
//! split over several blocks and merged (flash-decoding), prefill runs in tiles of query rows
//! that share each key/value chunk in shared memory, and batches that mix both with the
//! single-pass kernel. Each case also checks which path [`launch::paged_plan`] picks and, on
//! the emulator, how many kernels the call launched.
//!
//! Tolerances as in `ops_emulated.rs` (max |cuda - cpu| over the largest CPU magnitude): 1e-5
//! with f32 caches, 2e-3 with f16 caches; and within 1e-5 of an f64 computation over the same
//! cache values. With an f16 cache the CPU keeps its running output in f16 (as ggml's CPU flash
//! attention), which over 2000 keys is itself about 5e-3 from the f64 answer: there the CUDA
//! result may be that far from the CPU's (it stays within 1e-6 of the f64 answer).

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex, OnceLock};

use ferrite_cuda::launch::{self, RowPath};
use ferrite_cuda::{CudaBackend, EmuDriver};
use ferrite_tensor::{AttentionParams, AttentionSeq, DType, Device, Tensor};
use rand::{rngs::StdRng, seq::SliceRandom, SeedableRng};

mod common;

use common::{pair, random};

/// The emulated device with its driver (to count launches), or `None` (skipped) as [`common::emu`].
fn emu_with_driver() -> Option<&'static (Device, Arc<EmuDriver>)> {
    static DEVICE: OnceLock<Option<(Device, Arc<EmuDriver>)>> = OnceLock::new();
    DEVICE
        .get_or_init(|| {
            let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("cuda-emu");
            match ferrite_cuda::emu::build(&dir).and_then(|lib| EmuDriver::load(&lib)) {
                Ok(driver) => {
                    let driver = Arc::new(driver);
                    let be = CudaBackend::new(driver.clone());
                    Some((Device::new(Arc::new(be)), driver))
                }
                Err(e) => {
                    assert!(!common::ci(), "{e} (under CI=true the emulator must build)");
                    eprintln!("SKIPPED: {e}");
                    None
                }
            }
        })
        .as_ref()
}

/// Where the cases run: the emulator (with its driver) and a real GPU when there is one.
fn targets() -> Vec<(&'static Device, Option<&'static EmuDriver>)> {
    let mut v: Vec<_> = emu_with_driver().map(|(d, e)| (d, Some(e.as_ref()))).into_iter().collect();
    v.extend(common::gpu_backend().map(|(d, _)| (d, None)));
    v
}

/// One batch: its sequences (block tables filled in by [`batch`]), query rows and head shape.
struct Batch {
    seqs: Vec<AttentionSeq>,
    tokens: usize,
    q_heads: usize,
    kv_heads: usize,
    head_dim: usize,
    block_size: usize,
    slots: usize,
}

/// Sequences `(q_start, q_len, kv_len)` over shuffled cache blocks (two spare blocks).
fn batch(specs: &[(usize, usize, usize)], tokens: usize, heads: (usize, usize, usize), bs: usize) -> Batch {
    let blocks: usize = specs.iter().map(|s| s.2.div_ceil(bs)).sum::<usize>() + 2;
    let mut ids: Vec<u32> = (0..blocks as u32).collect();
    ids.shuffle(&mut StdRng::seed_from_u64(7));
    let mut next = ids.into_iter();
    let seqs = specs
        .iter()
        .map(|&(q_start, q_len, kv_len)| AttentionSeq {
            q_start,
            q_len,
            kv_len,
            block_table: next.by_ref().take(kv_len.div_ceil(bs)).collect(),
        })
        .collect();
    let (q_heads, kv_heads, head_dim) = heads;
    Batch { seqs, tokens, q_heads, kv_heads, head_dim, block_size: bs, slots: blocks * bs }
}

/// The plan the CUDA backend makes for `b` (as `ops/attention.rs` builds its inputs).
fn plan(b: &Batch, window: Option<usize>) -> launch::PagedPlan {
    let mut key_lens = vec![0; b.tokens];
    for s in &b.seqs {
        for i in 0..s.q_len {
            let pos = s.kv_len - s.q_len + i;
            key_lens[s.q_start + i] = pos + 1 - window.map_or(0, |w| (pos + 1).saturating_sub(w));
        }
    }
    let runs: Vec<_> = b.seqs.iter().map(|s| (s.q_start, s.q_len)).collect();
    launch::paged_plan(&runs, &key_lens, b.q_heads, b.kv_heads, b.head_dim)
}

/// Kernel launches of one attention call with `plan`.
fn launches_of(plan: &launch::PagedPlan) -> u64 {
    u64::from(plan.tile.is_some())
        + match plan.row_path {
            RowPath::None => 0,
            RowPath::All | RowPath::Rows => 1,
            RowPath::Split { .. } => 2,
        }
}

/// Attention in f64 over the cache values as stored (f16 caches rounded once, as both backends
/// read them), the query in f32: the exact answer both backends approximate.
fn exact(q: &[f32], k: &[f32], v: &[f32], b: &Batch, p: &AttentionParams) -> Vec<f32> {
    let (hq, hk, d) = (b.q_heads, b.kv_heads, b.head_dim);
    let mut out = vec![0f32; b.tokens * hq * d];
    for s in &b.seqs {
        for i in 0..s.q_len {
            let (t, pos) = (s.q_start + i, s.kv_len - s.q_len + i);
            for h in 0..hq {
                let kvh = h / (hq / hk);
                let qrow = &q[(t * hq + h) * d..][..d];
                let keys: Vec<(usize, f64)> = (p.first_visible(pos)..=pos)
                    .map(|pp| {
                        let off = (s.slot(pp, b.block_size) * hk + kvh) * d;
                        let dot: f64 = (0..d).map(|j| f64::from(qrow[j]) * f64::from(k[off + j])).sum();
                        let sc = dot * f64::from(p.scale);
                        (off, p.softcap.map_or(sc, |c| f64::from(c) * (sc / f64::from(c)).tanh()))
                    })
                    .collect();
                let m = keys.iter().fold(f64::NEG_INFINITY, |m, k| m.max(k.1));
                let total: f64 = keys.iter().map(|k| (k.1 - m).exp()).sum();
                for j in 0..d {
                    let o: f64 = keys.iter().map(|&(off, sc)| (sc - m).exp() * f64::from(v[off + j])).sum();
                    out[(t * hq + h) * d + j] = (o / total) as f32;
                }
            }
        }
    }
    out
}

/// max |a - b| over the largest |want|.
fn rel(want: &[f32], got: &[f32]) -> f32 {
    let peak = want.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    want.iter().zip(got).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max) / peak
}

/// Runs `b` with each of `variants` (window, softcap) for each cache dtype on every target,
/// checks it against the CPU and returns the worst relative error seen.
fn check(what: &str, b: &Batch, dtypes: &[DType], variants: &[(Option<usize>, Option<f32>)]) -> f32 {
    // One case at a time, so that the launch count is this call's alone.
    static SERIAL: Mutex<()> = Mutex::new(());
    let _one = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let (hq, hk, d, bs) = (b.q_heads, b.kv_heads, b.head_dim, b.block_size);
    let mut worst_all = 0f32;
    for (dev, emu) in targets() {
        let (q_cpu, q) = pair(&random(b.tokens * hq * d, 14, 1.0), &[b.tokens, hq, d], dev);
        for &dtype in dtypes {
            let cpu = Device::cpu();
            let kc_cpu = Tensor::zeros([b.slots, hk, d], dtype, &cpu).unwrap();
            let vc_cpu = Tensor::zeros([b.slots, hk, d], dtype, &cpu).unwrap();
            let kc = Tensor::zeros([b.slots, hk, d], dtype, dev).unwrap();
            let vc = Tensor::zeros([b.slots, hk, d], dtype, dev).unwrap();
            for (i, s) in b.seqs.iter().enumerate() {
                let slot_ids: Vec<u32> = (0..s.kv_len).map(|p| s.slot(p, bs) as u32).collect();
                let n = s.kv_len * hk * d;
                let (k_cpu, k) = pair(&random(n, 40 + i as u64, 1.0), &[s.kv_len, hk, d], dev);
                let (v_cpu, v) = pair(&random(n, 50 + i as u64, 1.0), &[s.kv_len, hk, d], dev);
                kc_cpu.write_kv(&k_cpu, &slot_ids).unwrap();
                vc_cpu.write_kv(&v_cpu, &slot_ids).unwrap();
                kc.write_kv(&k, &slot_ids).unwrap();
                vc.write_kv(&v, &slot_ids).unwrap();
            }
            let tol: f32 = if dtype == DType::F16 { 2e-3 } else { 1e-5 };
            for &(window, softcap) in variants {
                // Scores of a few units, so that the softmax is far from uniform.
                let p = AttentionParams { scale: 0.3, block_size: bs, sliding_window: window, softcap };
                let want = q_cpu.attention(&kc_cpu, &vc_cpu, &b.seqs, &p).unwrap().to_vec_f32().unwrap();
                let before = emu.map(EmuDriver::launches);
                let got = q.attention(&kc, &vc, &b.seqs, &p).unwrap().to_vec_f32().unwrap();
                if let (Some(e), Some(before)) = (emu, before) {
                    assert_eq!(e.launches() - before, launches_of(&plan(b, window)), "{what}: kernels launched");
                }
                let truth = exact(
                    &q_cpu.to_vec_f32().unwrap(),
                    &kc_cpu.to_vec_f32().unwrap(),
                    &vc_cpu.to_vec_f32().unwrap(),
                    b,
                    &p,
                );
                let (worst, cuda_err, cpu_err) = (rel(&want, &got), rel(&truth, &got), rel(&truth, &want));
                let label = format!("{what} on {}, {dtype:?} window {window:?} softcap {softcap:?}", dev.name());
                eprintln!("{label}: |cuda - cpu| {worst:.2e}, |cuda - f64| {cuda_err:.2e}, |cpu - f64| {cpu_err:.2e}");
                // The CUDA kernels compute in f32 from any cache: within 1e-5 of the exact answer.
                assert!(cuda_err <= 1e-5, "{label}: {cuda_err:e} from the f64 answer");
                // The CPU keeps an f16 cache's running output in f16 (as ggml does), which over
                // thousands of keys strays past 2e-3 by itself: then the gap may be that much.
                let allowed = tol.max(cpu_err + 1e-5);
                assert!(worst <= allowed, "{label}: {worst:e} from the CPU, over {allowed:e}");
                // Rows of no sequence are exactly zero.
                for t in 0..b.tokens {
                    if !b.seqs.iter().any(|s| (s.q_start..s.q_start + s.q_len).contains(&t)) {
                        assert!(got[t * hq * d..(t + 1) * hq * d].iter().all(|&v| v == 0.0), "{label}: row {t}");
                    }
                }
                worst_all = worst_all.max(worst);
            }
        }
    }
    worst_all
}

/// One query over 2100 keys (and a second over 700, and a row of no sequence): few blocks, so
/// the keys are split over several blocks and merged; with and without a window, f32 and f16.
#[test]
fn long_decode_rows_split_their_keys() {
    let b = batch(&[(0, 1, 2100), (2, 1, 700)], 3, (6, 2, 64), 16);
    assert_eq!(plan(&b, None).row_path, RowPath::Split { splits: 6, keys: 384 });
    assert_eq!(plan(&b, None).rows, vec![0, 1, 2]);
    assert_eq!(plan(&b, Some(1500)).row_path, RowPath::Split { splits: 4, keys: 384 });
    assert!(plan(&b, None).tile.is_none());
    let worst =
        check("split decode", &b, &[DType::F32, DType::F16], &[(None, None), (Some(1500), None), (None, Some(1.5))]);
    eprintln!("split decode: worst {worst:.2e}");
}

/// A 40-row prefill (tiles of 16, 16 and 8 rows: the last one stops at the sequence's end, where
/// the next sequence's rows begin), a 3-row run left to the per-row kernel, a row of no sequence
/// and a 10-row run that is one short tile; GQA 6:2, window, softcap, f32 and f16.
#[test]
fn prefill_runs_in_tiles() {
    let b = batch(&[(0, 40, 52), (40, 3, 9), (44, 10, 10)], 54, (6, 2, 64), 4);
    let p = plan(&b, None);
    let shape = p.tile.expect("tiled");
    assert_eq!((shape.tokens, shape.heads, shape.slices), (16, 3, 1));
    assert_eq!(p.tiles, vec![0, 16, 16, 16, 32, 8, 44, 10]);
    assert_eq!((p.rows, p.row_path), (vec![40, 41, 42, 43], RowPath::Rows));
    let worst = check(
        "prefill tiles",
        &b,
        &[DType::F32, DType::F16],
        &[(None, None), (Some(7), None), (None, Some(1.5)), (Some(20), Some(1.5))],
    );
    eprintln!("prefill tiles: worst {worst:.2e}");
}

/// Heads of 256 (13 rows per tile: 4 tokens x 3 heads) and a group wider than a tile (16 q heads
/// on one KV head: slices of 13 and 3 heads, one token per tile).
#[test]
fn prefill_tiles_of_wide_heads_and_sliced_groups() {
    let b = batch(&[(0, 9, 30), (9, 1, 5)], 10, (6, 2, 256), 8);
    let shape = plan(&b, None).tile.expect("tiled");
    assert_eq!((shape.tokens, shape.heads, shape.slices), (4, 3, 1));
    check("head_dim 256", &b, &[DType::F32], &[(None, None), (Some(5), Some(2.0))]);
    let b = batch(&[(0, 8, 20)], 8, (16, 1, 256), 8);
    let shape = plan(&b, None).tile.expect("tiled");
    assert_eq!((shape.tokens, shape.heads, shape.slices), (1, 13, 2));
    assert_eq!(plan(&b, None).row_path, RowPath::None);
    check("sliced group", &b, &[DType::F16], &[(Some(6), None)]);
}

/// A batch of everything: a prefill run in tiles, a long decode row (split), a short one and a
/// row of no sequence, whose rows are fewer than the target: the rest is split and merged.
#[test]
fn mixed_batches_tile_split_and_merge() {
    let b = batch(&[(0, 20, 30), (20, 1, 1100), (21, 1, 40), (23, 2, 5)], 25, (6, 2, 64), 16);
    let p = plan(&b, None);
    assert_eq!(p.tiles, vec![0, 16, 16, 4]);
    assert_eq!(p.rows, vec![20, 21, 22, 23, 24]);
    assert_eq!(p.row_path, RowPath::Split { splits: 3, keys: 384 });
    check("mixed", &b, &[DType::F32, DType::F16], &[(None, None), (Some(600), Some(1.5))]);
}
