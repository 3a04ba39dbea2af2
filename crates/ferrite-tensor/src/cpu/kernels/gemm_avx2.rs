//! The AVX2 + FMA microkernel of the f32 GEMM ([`crate::cpu::gemm_f32`]): `R` weight rows
//! (read in place, one broadcast per row and step) times one packed panel of 16 activation rows
//! (`[k][16]`, two 8-lane vectors per step), `2·R` accumulators (`R = 6` fills 12 of the 16 ymm
//! registers, leaving room for the two panel vectors and the broadcast).

use std::arch::x86_64::*;

/// Activation rows in one packed panel (two 8-lane vectors).
pub const PANEL: usize = 16;

/// `out[i·16 + l] = Σ_p w_i[p] · panel[p·16 + l]` for weight rows `i < R`, lanes `l < 16`,
/// where `w_i` is the `i`-th run of `k` little-endian f32 values of `w`.
///
/// # Safety
/// The CPU supports AVX2 and FMA; `w` holds at least `R·k` f32 values (as bytes, any
/// alignment), `panel` at least `16·k`, `out` at least `16·R`.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn tile<const R: usize>(w: &[u8], k: usize, panel: &[f32], out: &mut [f32]) {
    let wp: [*const f32; R] = std::array::from_fn(|i| w[i * k * 4..].as_ptr() as *const f32);
    let xp = panel.as_ptr();
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    // SAFETY: the caller guarantees the extents above; weights are read unaligned.
    unsafe {
        for p in 0..k {
            let x0 = _mm256_loadu_ps(xp.add(p * PANEL));
            let x1 = _mm256_loadu_ps(xp.add(p * PANEL + 8));
            for i in 0..R {
                let b = _mm256_set1_ps(wp[i].add(p).read_unaligned());
                acc[i][0] = _mm256_fmadd_ps(b, x0, acc[i][0]);
                acc[i][1] = _mm256_fmadd_ps(b, x1, acc[i][1]);
            }
        }
        let op = out.as_mut_ptr();
        for (i, a) in acc.iter().enumerate() {
            _mm256_storeu_ps(op.add(i * PANEL), a[0]);
            _mm256_storeu_ps(op.add(i * PANEL + 8), a[1]);
        }
    }
}

/// The packed microkernel of [`crate::cpu::gemm_blocked`]: a `6 x 16` block of `c` (rows
/// `ldc` apart) plus `Σ_p a[p·6 + i] · b[p·16 + j]` over `p < kc`, where `a` is a packed panel
/// of 6 activation rows (`[kc][6]`) and `b` one of 16 weight rows (`[kc][16]`). With `load`
/// false the block starts from zero instead of `c`. Each output is one FMA chain in `p` order
/// (the same chain as [`tile`] when the blocks of `k` follow each other).
///
/// # Safety
/// The CPU supports AVX2 and FMA; `a` holds `6·kc` values, `b` `16·kc`, and `c` rows
/// `0..6` of 16 values at `c + i·ldc`.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn packed_6x16(kc: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, load: bool) {
    // SAFETY: the caller guarantees the extents above.
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); 2]; 6];
        if load {
            for (i, r) in acc.iter_mut().enumerate() {
                r[0] = _mm256_loadu_ps(c.add(i * ldc));
                r[1] = _mm256_loadu_ps(c.add(i * ldc + 8));
            }
        }
        // One step of `k`: two weight vectors, six broadcasts, twelve FMAs.
        #[inline(always)]
        unsafe fn step(acc: &mut [[__m256; 2]; 6], a: *const f32, b: *const f32) {
            // SAFETY: the caller's extents cover this step.
            unsafe {
                let b0 = _mm256_loadu_ps(b);
                let b1 = _mm256_loadu_ps(b.add(8));
                for (i, r) in acc.iter_mut().enumerate() {
                    let av = _mm256_broadcast_ss(&*a.add(i));
                    r[0] = _mm256_fmadd_ps(av, b0, r[0]);
                    r[1] = _mm256_fmadd_ps(av, b1, r[1]);
                }
            }
        }
        let (mut a, mut b) = (a, b);
        for _ in 0..kc / 4 {
            step(&mut acc, a, b);
            step(&mut acc, a.add(6), b.add(16));
            step(&mut acc, a.add(12), b.add(32));
            step(&mut acc, a.add(18), b.add(48));
            a = a.add(24);
            b = b.add(64);
        }
        for _ in 0..kc % 4 {
            step(&mut acc, a, b);
            a = a.add(6);
            b = b.add(16);
        }
        for (i, r) in acc.iter().enumerate() {
            _mm256_storeu_ps(c.add(i * ldc), r[0]);
            _mm256_storeu_ps(c.add(i * ldc + 8), r[1]);
        }
    }
}

/// `dst[p·6 + i] = src[i][p]` for `p < len`, `i < 6`: six rows interleaved into one packed
/// panel of [`crate::cpu::gemm_blocked`], eight values of each row at a time (a 6x8 transpose
/// in registers), the last `len % 8` one by one.
///
/// # Safety
/// The CPU supports AVX2; every `src[i]` holds `len` values and `dst` `6·len`.
#[target_feature(enable = "avx2")]
pub unsafe fn interleave6(src: [*const f32; 6], len: usize, dst: *mut f32) {
    // SAFETY: the caller guarantees the extents; every store below lands inside
    // `dst[p0·6 .. (p0 + 8)·6]` for a chunk `p0 .. p0 + 8` within `len`.
    unsafe {
        let z = _mm256_setzero_ps();
        let mut p0 = 0;
        while p0 + 8 <= len {
            let [a, b, c, d, e, f] = src.map(|s| _mm256_loadu_ps(s.add(p0)));
            // Pairs of rows, then quads: lane p of u_j holds row values at column p (mod 4).
            let (t0, t1) = (_mm256_unpacklo_ps(a, b), _mm256_unpackhi_ps(a, b));
            let (t2, t3) = (_mm256_unpacklo_ps(c, d), _mm256_unpackhi_ps(c, d));
            let (t4, t5) = (_mm256_unpacklo_ps(e, f), _mm256_unpackhi_ps(e, f));
            let u0 = _mm256_shuffle_ps::<0x44>(t0, t2); // a0 b0 c0 d0 | a4 b4 c4 d4
            let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2); // a1 .. d1 | a5 .. d5
            let u2 = _mm256_shuffle_ps::<0x44>(t1, t3); // a2 .. d2 | a6 .. d6
            let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3); // a3 .. d3 | a7 .. d7
            let v0 = _mm256_shuffle_ps::<0x44>(t4, z); // e0 f0 0 0 | e4 f4 0 0
            let v1 = _mm256_shuffle_ps::<0xEE>(t4, z);
            let v2 = _mm256_shuffle_ps::<0x44>(t5, z);
            let v3 = _mm256_shuffle_ps::<0xEE>(t5, z);
            let out = dst.add(p0 * 6);
            // Eight-wide stores 6 apart: each one's two spare lanes are overwritten by the
            // next; the last column is stored as exactly 6 values.
            _mm256_storeu_ps(out, _mm256_permute2f128_ps::<0x20>(u0, v0));
            _mm256_storeu_ps(out.add(6), _mm256_permute2f128_ps::<0x20>(u1, v1));
            _mm256_storeu_ps(out.add(12), _mm256_permute2f128_ps::<0x20>(u2, v2));
            _mm256_storeu_ps(out.add(18), _mm256_permute2f128_ps::<0x20>(u3, v3));
            _mm256_storeu_ps(out.add(24), _mm256_permute2f128_ps::<0x31>(u0, v0));
            _mm256_storeu_ps(out.add(30), _mm256_permute2f128_ps::<0x31>(u1, v1));
            _mm256_storeu_ps(out.add(36), _mm256_permute2f128_ps::<0x31>(u2, v2));
            let last = _mm256_permute2f128_ps::<0x31>(u3, v3);
            _mm_storeu_ps(out.add(42), _mm256_castps256_ps128(last));
            _mm_store_sd(out.add(46) as *mut f64, _mm_castps_pd(_mm256_extractf128_ps::<1>(last)));
            p0 += 8;
        }
        for p in p0..len {
            for (i, s) in src.iter().enumerate() {
                *dst.add(p * 6 + i) = *s.add(p);
            }
        }
    }
}
