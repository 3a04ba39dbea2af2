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
