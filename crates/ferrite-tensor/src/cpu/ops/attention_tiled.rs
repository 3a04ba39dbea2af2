//! Tiled attention for long query runs (prefill chunks of at least [`Q_TILE`] tokens), after
//! ggml's `ggml_compute_forward_flash_attn_ext_tiled`: f32 throughout, 64 queries x 64 keys per
//! tile, scores by a small GEMM over a transposed f32 K tile, an online softmax per query row,
//! then `P·V` by a second GEMM. All query heads that share a KV head are done together, so each
//! K/V tile is converted once for the whole group.

use super::simd::{level, Elem, Level};
use crate::backend::{AttentionParams, AttentionSeq};

/// Queries per tile (and the minimum run length for which the tiled path is used).
pub(crate) const Q_TILE: usize = 64;
/// Keys per tile.
pub(crate) const KV_TILE: usize = 64;
/// Output columns accumulated in registers at a time in `P·V`.
const PV_CHUNK: usize = 64;

/// `e^x` for f32, accurate to a few ulp on [-87, 88], 0 below (so `-inf` gives 0). Written
/// with plain arithmetic so that it vectorizes inside the SIMD-enabled callers.
#[inline(always)]
fn exp_approx(x: f32) -> f32 {
    let under = x < -87.0;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * std::f32::consts::LOG2_E).round();
    let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6;
    let p =
        1.0 + r * (1.0 + r * (0.5 + r * (0.166_666_67 + r * (0.041_666_42 + r * (0.008_333_28 + r * 0.001_394_1)))));
    let bits = ((n as i32 + 127) as u32) << 23;
    if under {
        0.0
    } else {
        p * f32::from_bits(bits)
    }
}

/// Work of one tile, with its scratch buffers.
struct Tile<'a> {
    /// `rows x d` queries (row = query token * group + head in group).
    q: &'a [f32],
    rows: usize,
    d: usize,
    group: usize,
    /// Position of the tile's first query token.
    pos0: usize,
}

/// The body of the tiled kernel; `#[inline(always)]` so each `target_feature` wrapper below
/// compiles it with its own instruction set.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn tile_body<T: Elem>(
    t: &Tile<'_>,
    k: &[T],
    v: &[T],
    seq: &AttentionSeq,
    kvh: usize,
    kv_row: usize,
    p: &AttentionParams,
    out: &mut [f32],
) {
    let (rows, d) = (t.rows, t.d);
    let n_tok = rows / t.group;
    let last = t.pos0 + n_tok - 1;
    let lo = p.first_visible(t.pos0);
    let slot_of = |pp: usize| seq.slot(pp, p.block_size);
    let mut m = vec![f32::NEG_INFINITY; rows];
    let mut s = vec![0f32; rows];
    out[..rows * d].fill(0.0);
    let mut kt = vec![0f32; d * KV_TILE]; // K tile transposed: kt[dk * KV_TILE + j]
    let mut vt = vec![0f32; KV_TILE * d];
    let mut kq = vec![0f32; rows * KV_TILE];
    let mut k0 = lo - lo % KV_TILE;
    while k0 <= last {
        let nk = KV_TILE.min(last + 1 - k0);
        for j in 0..KV_TILE {
            let (krow, vrow) = if j < nk {
                let base = slot_of(k0 + j) * kv_row + kvh * d;
                (Some(&k[base..base + d]), Some(&v[base..base + d]))
            } else {
                (None, None)
            };
            for dk in 0..d {
                kt[dk * KV_TILE + j] = krow.map_or(0.0, |r| r[dk].to_f32());
            }
            let dst = &mut vt[j * d..(j + 1) * d];
            match vrow {
                Some(r) => dst.iter_mut().zip(r).for_each(|(o, x)| *o = x.to_f32()),
                None => dst.fill(0.0),
            }
        }
        // Scores: kq[r][j] = q[r] · k[j] * scale, masked.
        for r in 0..rows {
            let qr = &t.q[r * d..(r + 1) * d];
            // A fixed-size accumulator stays in registers (4 zmm) across the whole dot.
            let mut reg = [0f32; KV_TILE];
            for (dk, &qv) in qr.iter().enumerate() {
                let krow: &[f32; KV_TILE] = kt[dk * KV_TILE..(dk + 1) * KV_TILE].try_into().unwrap_or(&[0.0; KV_TILE]);
                for (a, &kv) in reg.iter_mut().zip(krow) {
                    *a = qv.mul_add(kv, *a);
                }
            }
            let acc = &mut kq[r * KV_TILE..(r + 1) * KV_TILE];
            acc.copy_from_slice(&reg);
            let pos = t.pos0 + r / t.group;
            let lo_r = p.first_visible(pos);
            for (j, a) in acc.iter_mut().enumerate() {
                let kp = k0 + j;
                let mut x = *a * p.scale;
                if let Some(c) = p.softcap {
                    x = c * (x / c).tanh();
                }
                *a = if j < nk && kp <= pos && kp >= lo_r { x } else { f32::NEG_INFINITY };
            }
            // Online softmax.
            let tile_max = acc.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            if tile_max == f32::NEG_INFINITY {
                acc.fill(0.0);
                continue;
            }
            let m_new = m[r].max(tile_max);
            if m_new > m[r] {
                let ms = exp_approx(m[r] - m_new);
                out[r * d..(r + 1) * d].iter_mut().for_each(|o| *o *= ms);
                s[r] *= ms;
            }
            m[r] = m_new;
            // Exponentials first (vectorizes), then the sum.
            for a in acc.iter_mut() {
                *a = exp_approx(*a - m_new);
            }
            s[r] += acc.iter().sum::<f32>();
        }
        // out[r] += Σ_j p[r][j] · v[j]
        for r in 0..rows {
            let pr = &kq[r * KV_TILE..r * KV_TILE + nk];
            let o = &mut out[r * d..(r + 1) * d];
            // Output columns in register-sized chunks, accumulated over the tile's keys.
            let mut c = 0;
            while c + PV_CHUNK <= d {
                let mut reg: [f32; PV_CHUNK] = o[c..c + PV_CHUNK].try_into().unwrap_or([0.0; PV_CHUNK]);
                for (j, &w) in pr.iter().enumerate() {
                    let vr: &[f32; PV_CHUNK] =
                        vt[j * d + c..j * d + c + PV_CHUNK].try_into().unwrap_or(&[0.0; PV_CHUNK]);
                    for (a, &vv) in reg.iter_mut().zip(vr) {
                        *a = w.mul_add(vv, *a);
                    }
                }
                o[c..c + PV_CHUNK].copy_from_slice(&reg);
                c += PV_CHUNK;
            }
            for (j, &w) in pr.iter().enumerate() {
                for (x, &vv) in o[c..].iter_mut().zip(&vt[j * d + c..(j + 1) * d]) {
                    *x += w * vv;
                }
            }
        }
        k0 += KV_TILE;
    }
    for r in 0..rows {
        let inv = if s[r] > 0.0 { 1.0 / s[r] } else { 0.0 };
        out[r * d..(r + 1) * d].iter_mut().for_each(|o| *o *= inv);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_avx512<T: Elem>(
    t: &Tile<'_>,
    k: &[T],
    v: &[T],
    seq: &AttentionSeq,
    kvh: usize,
    kv_row: usize,
    p: &AttentionParams,
    out: &mut [f32],
) {
    tile_body(t, k, v, seq, kvh, kv_row, p, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_avx2<T: Elem>(
    t: &Tile<'_>,
    k: &[T],
    v: &[T],
    seq: &AttentionSeq,
    kvh: usize,
    kv_row: usize,
    p: &AttentionParams,
    out: &mut [f32],
) {
    tile_body(t, k, v, seq, kvh, kv_row, p, out)
}

/// Attention for query tokens `t0 .. t0 + n_tok` of `seq` (positions from `pos0`) and the
/// `group` query heads of KV head `kvh`. `q` holds those rows packed (`n_tok * group` rows of
/// `d`); the result has the same layout.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attend_tile<T: Elem>(
    q: &[f32],
    n_tok: usize,
    group: usize,
    d: usize,
    pos0: usize,
    k: &[T],
    v: &[T],
    seq: &AttentionSeq,
    kvh: usize,
    kv_row: usize,
    p: &AttentionParams,
    out: &mut [f32],
) {
    let t = Tile { q, rows: n_tok * group, d, group, pos0 };
    match level() {
        // SAFETY: `level()` verified the CPU features these functions enable.
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { tile_avx512(&t, k, v, seq, kvh, kv_row, p, out) },
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => unsafe { tile_avx2(&t, k, v, seq, kvh, kv_row, p, out) },
        _ => tile_body(&t, k, v, seq, kvh, kv_row, p, out),
    }
}

#[cfg(test)]
mod tests {
    use super::exp_approx;

    #[test]
    fn exp_approx_is_accurate() {
        let mut x = -87.0f32;
        while x < 88.0 {
            let (got, want) = (exp_approx(x) as f64, (x as f64).exp());
            assert!((got - want).abs() <= 4e-7 * want, "exp({x}) = {got}, want {want}");
            x += 0.0137;
        }
        assert_eq!(exp_approx(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_approx(-100.0), 0.0);
    }
}
