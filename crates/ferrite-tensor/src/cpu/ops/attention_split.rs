//! Attention of single query rows over long key runs, split over the keys (as ggml's split-KV
//! decode path): each task takes one (token, KV head) and a run of [`CHUNK`] keys for all the
//! query heads that share that KV head (each key and value row is read once for the group),
//! and keeps a partial softmax (its maximum, its sum and its weighted values, in f32); the
//! partials of a row are then merged. With one decode row and a few KV heads this is what keeps
//! every thread busy; a row-per-task split would give 2 threads 9 SmolLM2 heads, or 3 tasks.

use rayon::prelude::*;

use super::simd::{axpy, dot, Elem};
use crate::backend::{AttentionParams, AttentionSeq};

/// Keys per task.
pub(super) const CHUNK: usize = 128;

/// One query row's heads that share a KV head: `(token, kv head, sequence, position)`.
#[derive(Clone, Copy)]
pub(super) struct Unit {
    pub token: usize,
    pub kvh: usize,
    pub seq: usize,
    pub pos: usize,
}

/// The softmax of one run of keys for `group` heads: per head its maximum score, its sum of
/// `exp(score - max)` and `Σ exp(score - max) · v` (`[group, d]`).
struct Partial {
    max: Vec<f32>,
    sum: Vec<f32>,
    acc: Vec<f32>,
}

/// Attention of every unit, written to `out` (`[tokens, q_heads, d]`); `q` as `out`.
#[allow(clippy::too_many_arguments)]
pub(super) fn attend_units<T: Elem>(
    out: &mut [f32],
    q: &[f32],
    k: &[T],
    v: &[T],
    seqs: &[AttentionSeq],
    units: &[Unit],
    (hq, hkv, d): (usize, usize, usize),
    p: &AttentionParams,
) {
    let group = hq / hkv;
    let kv_row = hkv * d;
    // (unit, first key, end key) for every run of CHUNK visible keys.
    let tasks: Vec<(usize, usize, usize)> = units
        .iter()
        .enumerate()
        .flat_map(|(ui, u)| {
            let lo = p.first_visible(u.pos);
            (lo..=u.pos).step_by(CHUNK).map(move |k0| (ui, k0, (k0 + CHUNK).min(u.pos + 1)))
        })
        .collect();
    let partials: Vec<Partial> = tasks
        .par_iter()
        .map(|&(ui, k0, k1)| {
            let u = &units[ui];
            let seq = &seqs[u.seq];
            let row0 = u.token * hq + u.kvh * group;
            let qg = &q[row0 * d..(row0 + group) * d];
            let offs: Vec<usize> = (k0..k1).map(|pp| seq.slot(pp, p.block_size) * kv_row + u.kvh * d).collect();
            let n = k1 - k0;
            let mut scores = vec![0f32; group * n];
            for (i, &o) in offs.iter().enumerate() {
                let kr = &k[o..o + d];
                for g in 0..group {
                    let s = dot(&qg[g * d..(g + 1) * d], kr) * p.scale;
                    scores[g * n + i] = match p.softcap {
                        Some(c) => c * (s / c).tanh(),
                        None => s,
                    };
                }
            }
            let mut part = Partial { max: vec![0.0; group], sum: vec![0.0; group], acc: vec![0.0; group * d] };
            for g in 0..group {
                let s = &mut scores[g * n..(g + 1) * n];
                let m = s.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                let mut sum = 0f32;
                for x in s.iter_mut() {
                    *x = (*x - m).exp();
                    sum += *x;
                }
                part.max[g] = m;
                part.sum[g] = sum;
            }
            // Value rows outer, so each is read once for the whole group.
            for (i, &o) in offs.iter().enumerate() {
                let vr = &v[o..o + d];
                for g in 0..group {
                    axpy(&mut part.acc[g * d..(g + 1) * d], scores[g * n + i], vr);
                }
            }
            part
        })
        .collect();
    // Merge each unit's runs (they are consecutive in `tasks`).
    let mut t = 0;
    for (ui, u) in units.iter().enumerate() {
        let first = t;
        while t < tasks.len() && tasks[t].0 == ui {
            t += 1;
        }
        let runs = &partials[first..t];
        let row0 = u.token * hq + u.kvh * group;
        for g in 0..group {
            let o = &mut out[(row0 + g) * d..(row0 + g + 1) * d];
            let m = runs.iter().fold(f32::NEG_INFINITY, |a, r| a.max(r.max[g]));
            o.fill(0.0);
            let mut sum = 0f32;
            for r in runs {
                let w = (r.max[g] - m).exp();
                sum += w * r.sum[g];
                axpy(o, w, &r.acc[g * d..(g + 1) * d]);
            }
            let inv = if sum > 0.0 { 1.0 / sum } else { 0.0 };
            o.iter_mut().for_each(|x| *x *= inv);
        }
    }
}
