//! Tiled attention for long query runs (prefill chunks of at least [`Q_TILE`] tokens), after
//! ggml's `ggml_compute_forward_flash_attn_ext_tiled`: f32 throughout, 64 queries x 64 keys per
//! tile, scores by a small GEMM over a transposed f32 K tile, an online softmax per query row,
//! then `P·V` by a second GEMM. All query heads that share a KV head are done together, so each
//! K/V tile is converted once for the whole group.

use super::simd::{level, Elem, Level};
use crate::backend::{AttentionParams, AttentionSeq};
use crate::cpu::gemm_blocked::{interleave, wide, Wide, MR};
use crate::cpu::kernels::Isa;

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
    // `n` is a whole number in [-126, 127]: added to 1.5·2^23 it lands in the mantissa, which
    // reads it as an integer with plain integer operations (`n as i32` is a saturating
    // conversion that does not vectorize).
    let n_int = (n + 12_582_912.0).to_bits().wrapping_sub(0x4B40_0000) as i32;
    let bits = ((n_int + 127) as u32) << 23;
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
fn tile_body<T: Elem, const RB: usize>(
    t: &Tile<'_>,
    k: &[T],
    v: &[T],
    seq: &AttentionSeq,
    kvh: usize,
    kv_row: usize,
    p: &AttentionParams,
    out: &mut [f32],
    wide: Option<Wide>,
) {
    let (rows, d) = (t.rows, t.d);
    let n_tok = rows / t.group;
    let last = t.pos0 + n_tok - 1;
    let lo = p.first_visible(t.pos0);
    let slot_of = |pp: usize| seq.slot(pp, p.block_size);
    let mut m = vec![f32::NEG_INFINITY; rows];
    let mut s = vec![0f32; rows];
    let mut row = vec![0f32; d];
    // With the 12 x 32 panel kernel: rows in blocks of 12 (the padding rows are zero queries and
    // their results are dropped), Q packed once into panels of 6 rows (`[d][6]`), each tile's
    // weights likewise (`[keys][6]`).
    let wide = wide.filter(|_| d.is_multiple_of(32));
    let rows_pad = if wide.is_some() { rows.div_ceil(12) * 12 } else { rows };
    let mut kq = vec![0f32; rows_pad * KV_TILE];
    let mut o = vec![0f32; rows_pad * d];
    // The K tile transposed (`[d][KV_TILE]`), or for the panel kernel 4 panels of 16 keys
    // (`[d][16]`); the V tile as it is (`[KV_TILE][d]`), or panels of 16 columns (`[KV_TILE][16]`).
    let mut kt = vec![0f32; d * KV_TILE];
    let mut vt = vec![0f32; KV_TILE * d];
    let (mut qa, mut pa) = (Vec::new(), Vec::new());
    if wide.is_some() {
        let zeros = vec![0f32; d];
        qa = vec![0f32; rows_pad * d];
        for (p6, panel) in qa.chunks_exact_mut(MR * d).enumerate() {
            let rows_of: [&[f32]; MR] = std::array::from_fn(|i| {
                let r = MR * p6 + i;
                if r < rows {
                    &t.q[r * d..(r + 1) * d]
                } else {
                    &zeros
                }
            });
            interleave(rows_of, panel);
        }
        pa = vec![0f32; rows_pad * KV_TILE];
    }
    let mut k0 = lo - lo % KV_TILE;
    while k0 <= last {
        let nk = KV_TILE.min(last + 1 - k0);
        // Keys past `nk` are zero (their scores are masked); values past `nk` are never read.
        for j in 0..KV_TILE {
            // Value `dk` of key `j` sits at `kt[at + dk * step]`.
            let (at, step) = if wide.is_some() { ((j / 16) * d * 16 + j % 16, 16) } else { (j, KV_TILE) };
            if j >= nk {
                (0..d).for_each(|dk| kt[at + dk * step] = 0.0);
                continue;
            }
            let base = slot_of(k0 + j) * kv_row + kvh * d;
            T::widen(&k[base..base + d], &mut row);
            for (dk, &x) in row.iter().enumerate() {
                kt[at + dk * step] = x;
            }
            if wide.is_some() {
                T::widen(&v[base..base + d], &mut row);
                for (cp, chunk) in row.chunks_exact(16).enumerate() {
                    vt[(cp * KV_TILE + j) * 16..(cp * KV_TILE + j + 1) * 16].copy_from_slice(chunk);
                }
            } else {
                T::widen(&v[base..base + d], &mut vt[j * d..(j + 1) * d]);
            }
        }
        // Scores: kq[r][j] = q[r] · k[j], 12 or RB rows at a time.
        if let Some(wk) = wide {
            for rb in (0..rows_pad).step_by(12) {
                for h in 0..2 {
                    // SAFETY: `wide` checked AVX-512F; Q panels `rb/6`, `rb/6 + 1` hold `6·d`
                    // values, K panels `2h`, `2h + 1` `16·d`, and rows `rb..rb + 12` of `kq`
                    // (`rows_pad` rows of KV_TILE) have columns `32h..32h + 32`.
                    unsafe {
                        wk(
                            d,
                            qa.as_ptr().add(rb * d),
                            qa.as_ptr().add((rb + 6) * d),
                            kt.as_ptr().add(2 * h * d * 16),
                            kt.as_ptr().add((2 * h + 1) * d * 16),
                            kq.as_mut_ptr().add(rb * KV_TILE + 32 * h),
                            KV_TILE,
                            false,
                        )
                    };
                }
            }
        } else {
            let mut r = 0;
            while r < rows {
                let take = if rows - r >= RB { RB } else { 1 };
                let (q_rows, kq_rows) = (&t.q[r * d..(r + take) * d], &mut kq[r * KV_TILE..(r + take) * KV_TILE]);
                if take == RB {
                    scores::<RB>(q_rows, d, &kt, kq_rows);
                } else {
                    scores::<1>(q_rows, d, &kt, kq_rows);
                }
                r += take;
            }
        }
        // Scaled, masked, then the online softmax per row.
        for r in 0..rows {
            let acc = &mut kq[r * KV_TILE..(r + 1) * KV_TILE];
            let pos = t.pos0 + r / t.group;
            // Keys `j` of the tile with `lo_r <= k0 + j <= pos` and `j < nk` are visible: one run.
            let j_lo = p.first_visible(pos).saturating_sub(k0).min(KV_TILE);
            let j_hi = (pos + 1).saturating_sub(k0).min(nk).max(j_lo);
            acc[..j_lo].fill(f32::NEG_INFINITY);
            acc[j_hi..].fill(f32::NEG_INFINITY);
            match p.softcap {
                None => acc[j_lo..j_hi].iter_mut().for_each(|a| *a *= p.scale),
                Some(c) => acc[j_lo..j_hi].iter_mut().for_each(|a| *a = c * ((*a * p.scale) / c).tanh()),
            }
            let tile_max = acc.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            if tile_max == f32::NEG_INFINITY {
                acc.fill(0.0);
                continue;
            }
            let m_new = m[r].max(tile_max);
            if m_new > m[r] {
                let ms = exp_approx(m[r] - m_new);
                o[r * d..(r + 1) * d].iter_mut().for_each(|x| *x *= ms);
                s[r] *= ms;
            }
            m[r] = m_new;
            // Exponentials first (vectorizes), then the sum.
            for a in acc.iter_mut() {
                *a = exp_approx(*a - m_new);
            }
            s[r] += acc.iter().sum::<f32>();
        }
        // o[r] += Σ_j p[r][j] · v[j], 12 or RB rows at a time.
        if let Some(wk) = wide {
            let zeros = [0f32; KV_TILE];
            for (p6, panel) in pa.chunks_exact_mut(MR * KV_TILE).enumerate() {
                let rows_of: [&[f32]; MR] = std::array::from_fn(|i| {
                    let r = MR * p6 + i;
                    if r < rows {
                        &kq[r * KV_TILE..r * KV_TILE + nk]
                    } else {
                        &zeros[..nk]
                    }
                });
                interleave(rows_of, &mut panel[..MR * nk]);
            }
            for rb in (0..rows_pad).step_by(12) {
                for cb in (0..d).step_by(32) {
                    // SAFETY: `wide` checked AVX-512F; weight panels `rb/6`, `rb/6 + 1` hold
                    // `6·KV_TILE >= 6·nk` values, V panels `cb/16`, `cb/16 + 1` `16·KV_TILE`, and
                    // rows `rb..rb + 12` of `o` (`rows_pad` rows of `d`) columns `cb..cb + 32`.
                    unsafe {
                        wk(
                            nk,
                            pa.as_ptr().add(rb * KV_TILE),
                            pa.as_ptr().add((rb + 6) * KV_TILE),
                            vt.as_ptr().add((cb / 16) * KV_TILE * 16),
                            vt.as_ptr().add((cb / 16 + 1) * KV_TILE * 16),
                            o.as_mut_ptr().add(rb * d + cb),
                            d,
                            true,
                        )
                    };
                }
            }
        } else {
            let mut r = 0;
            while r < rows {
                let take = if rows - r >= RB { RB } else { 1 };
                let (kq_rows, o_rows) = (&kq[r * KV_TILE..(r + take) * KV_TILE], &mut o[r * d..(r + take) * d]);
                if take == RB {
                    weighted_values::<RB>(kq_rows, nk, &vt, d, o_rows);
                } else {
                    weighted_values::<1>(kq_rows, nk, &vt, d, o_rows);
                }
                r += take;
            }
        }
        k0 += KV_TILE;
    }
    for r in 0..rows {
        let inv = if s[r] > 0.0 { 1.0 / s[r] } else { 0.0 };
        for (y, &x) in out[r * d..(r + 1) * d].iter_mut().zip(&o[r * d..(r + 1) * d]) {
            *y = x * inv;
        }
    }
}

/// `out[i][j] = q_i · kt[·][j]` for the `R` query rows of `q` (`R x d`) against a transposed K
/// tile, each score an FMA chain over `dk` in order (the same bits for any `R`); `R` rows give
/// `R` times the independent chains, which an FMA's latency needs on 512-bit registers.
#[inline(always)]
fn scores<const R: usize>(q: &[f32], d: usize, kt: &[f32], out: &mut [f32]) {
    let qrows: [&[f32]; R] = std::array::from_fn(|i| &q[i * d..(i + 1) * d]);
    let mut reg = [[0f32; KV_TILE]; R];
    for dk in 0..d {
        let krow: &[f32; KV_TILE] = kt[dk * KV_TILE..(dk + 1) * KV_TILE].try_into().unwrap_or(&[0.0; KV_TILE]);
        for (acc, qr) in reg.iter_mut().zip(&qrows) {
            let qv = qr[dk];
            for (a, &kv) in acc.iter_mut().zip(krow) {
                *a = qv.mul_add(kv, *a);
            }
        }
    }
    for (o, acc) in out.chunks_exact_mut(KV_TILE).zip(&reg) {
        o.copy_from_slice(acc);
    }
}

/// `out[i] += Σ_{j < nk} w[i][j] · vt[j]` for `R` rows (`w`: `R x KV_TILE`, `out`: `R x d`),
/// each output an FMA chain over `j` in order (the same bits for any `R`), [`PV_CHUNK`]
/// columns in registers at a time; columns past the last whole chunk add `w · v` unfused.
#[inline(always)]
fn weighted_values<const R: usize>(w: &[f32], nk: usize, vt: &[f32], d: usize, out: &mut [f32]) {
    let mut c = 0;
    while c + PV_CHUNK <= d {
        let mut reg = [[0f32; PV_CHUNK]; R];
        for (i, acc) in reg.iter_mut().enumerate() {
            acc.copy_from_slice(&out[i * d + c..i * d + c + PV_CHUNK]);
        }
        for j in 0..nk {
            let vr: &[f32; PV_CHUNK] = vt[j * d + c..j * d + c + PV_CHUNK].try_into().unwrap_or(&[0.0; PV_CHUNK]);
            for (i, acc) in reg.iter_mut().enumerate() {
                let wv = w[i * KV_TILE + j];
                for (a, &vv) in acc.iter_mut().zip(vr) {
                    *a = wv.mul_add(vv, *a);
                }
            }
        }
        for (i, acc) in reg.iter().enumerate() {
            out[i * d + c..i * d + c + PV_CHUNK].copy_from_slice(acc);
        }
        c += PV_CHUNK;
    }
    if c < d {
        for i in 0..R {
            for j in 0..nk {
                let wv = w[i * KV_TILE + j];
                for (x, &vv) in out[i * d + c..(i + 1) * d].iter_mut().zip(&vt[j * d + c..(j + 1) * d]) {
                    *x += wv * vv;
                }
            }
        }
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
    tile_body::<T, 4>(t, k, v, seq, kvh, kv_row, p, out, wide(Isa::best()))
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
    tile_body::<T, 1>(t, k, v, seq, kvh, kv_row, p, out, None)
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
        _ => tile_body::<T, 1>(&t, k, v, seq, kvh, kv_row, p, out, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel this CPU runs (on AVX-512: the 12 x 32 panel kernel for head sizes that are a
    /// multiple of 32, rows in blocks of 4 otherwise) gives the bits of one row at a time (every
    /// score and output is the same FMA chain), for head sizes with and without a partial column
    /// chunk, key tiles partly masked, a row count that leaves a remainder, and f16 and f32 caches.
    #[test]
    fn row_blocks_give_single_row_bits() {
        let val = |i: usize, seed: usize| (((i * 7919 + seed * 104_729) % 2003) as f32 - 1001.0) * 1.1e-3;
        for d in [64usize, 80, 256] {
            for (n_tok, group, pos0) in [(64usize, 4usize, 0usize), (22, 3, 37), (9, 1, 130)] {
                let kv_len = pos0 + n_tok;
                let (bs, kv_row) = (16usize, d);
                let blocks = kv_len.div_ceil(bs);
                let kf: Vec<f32> = (0..blocks * bs * d).map(|i| val(i, 1)).collect();
                let vf: Vec<f32> = (0..blocks * bs * d).map(|i| val(i, 2)).collect();
                let q: Vec<f32> = (0..n_tok * group * d).map(|i| val(i, 3) * 4.0).collect();
                // Blocks in reverse order, so slots are not positions.
                let seq =
                    AttentionSeq { q_start: 0, q_len: n_tok, kv_len, block_table: (0..blocks as u32).rev().collect() };
                for window in [None, Some(40)] {
                    let p = AttentionParams { scale: 0.125, block_size: bs, sliding_window: window, softcap: None };
                    let t = Tile { q: &q, rows: n_tok * group, d, group, pos0 };
                    let run = |blocked: bool, k16: bool| -> Vec<f32> {
                        let mut out = vec![0f32; q.len()];
                        if k16 {
                            let k: Vec<half::f16> = kf.iter().map(|&x| half::f16::from_f32(x)).collect();
                            let v: Vec<half::f16> = vf.iter().map(|&x| half::f16::from_f32(x)).collect();
                            if blocked {
                                attend_tile(&q, n_tok, group, d, pos0, &k, &v, &seq, 0, kv_row, &p, &mut out);
                            } else {
                                tile_body::<_, 1>(&t, &k, &v, &seq, 0, kv_row, &p, &mut out, None);
                            }
                        } else if blocked {
                            attend_tile(&q, n_tok, group, d, pos0, &kf, &vf, &seq, 0, kv_row, &p, &mut out);
                        } else {
                            tile_body::<_, 1>(&t, &kf, &vf, &seq, 0, kv_row, &p, &mut out, None);
                        }
                        out
                    };
                    for k16 in [false, true] {
                        let (a, b) = (run(true, k16), run(false, k16));
                        assert!(a.iter().any(|x| *x != 0.0), "all zero: d={d} n_tok={n_tok}");
                        let same = a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits());
                        assert!(same, "d={d} n_tok={n_tok} group={group} window={window:?} f16={k16}");
                    }
                }
            }
        }
    }

    #[test]
    fn exp_approx_is_accurate() {
        let mut x = -87.0f32;
        while x < 88.0 {
            let (got, want) = (exp_approx(x) as f64, (x as f64).exp());
            assert!((got - want).abs() <= 4e-7 * want, "exp({x}) = {got}, want {want}");
            x += 0.0137;
        }
        // The exponent assembled with integer operations is `n as i32`'s.
        let mut n = -126.0f32;
        while n <= 127.0 {
            let old = ((n as i32 + 127) as u32) << 23;
            let new = (((n + 12_582_912.0).to_bits().wrapping_sub(0x4B40_0000) as i32 + 127) as u32) << 23;
            assert_eq!(old, new, "n = {n}");
            n += 1.0;
        }
        assert_eq!(exp_approx(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_approx(-100.0), 0.0);
    }
}
