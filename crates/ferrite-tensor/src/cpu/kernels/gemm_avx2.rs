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
