//! The AVX-512 microkernel of [`crate::cpu::gemm_blocked`]: a `12 x 32` output block from two
//! packed activation panels (6 rows each) and two packed weight panels (16 rows each), so the
//! layouts of the `6 x 16` AVX2 kernel serve both. 24 accumulators of 16 lanes, two weight loads
//! and twelve broadcasts per step of `k`: four times the AVX2 kernel's work per instruction
//! count of loads. Each output is one FMA chain in `k` order, so the bits equal the AVX2 and
//! portable kernels'.

use std::arch::x86_64::*;

/// Rows of the block (two panels of 6).
const ROWS: usize = 12;

/// `c[i][j] (+)= Σ_p a_i[p] · b_j[p]` for the 12 x 32 block at `c` (rows `ldc` apart): rows
/// 0..6 from panel `a0` (`[kc][6]`), 6..12 from `a1`; columns 0..16 from panel `b0`
/// (`[kc][16]`), 16..32 from `b1`. With `load` false the block starts from zero.
///
/// # Safety
/// The CPU supports AVX-512F; `a0`/`a1` hold `6·kc` values, `b0`/`b1` `16·kc`, and `c` rows
/// `0..12` of 32 writable values at `c + i·ldc`.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn packed_12x32(
    kc: usize,
    a0: *const f32,
    a1: *const f32,
    b0: *const f32,
    b1: *const f32,
    c: *mut f32,
    ldc: usize,
    load: bool,
) {
    // SAFETY: the caller guarantees the extents above.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); 2]; ROWS];
        if load {
            for (i, r) in acc.iter_mut().enumerate() {
                r[0] = _mm512_loadu_ps(c.add(i * ldc));
                r[1] = _mm512_loadu_ps(c.add(i * ldc + 16));
            }
        }
        let (mut a0, mut a1, mut b0, mut b1) = (a0, a1, b0, b1);
        for _ in 0..kc {
            let w0 = _mm512_loadu_ps(b0);
            let w1 = _mm512_loadu_ps(b1);
            for i in 0..6 {
                let x = _mm512_set1_ps(*a0.add(i));
                acc[i][0] = _mm512_fmadd_ps(x, w0, acc[i][0]);
                acc[i][1] = _mm512_fmadd_ps(x, w1, acc[i][1]);
                let y = _mm512_set1_ps(*a1.add(i));
                acc[6 + i][0] = _mm512_fmadd_ps(y, w0, acc[6 + i][0]);
                acc[6 + i][1] = _mm512_fmadd_ps(y, w1, acc[6 + i][1]);
            }
            a0 = a0.add(6);
            a1 = a1.add(6);
            b0 = b0.add(16);
            b1 = b1.add(16);
        }
        for (i, r) in acc.iter().enumerate() {
            _mm512_storeu_ps(c.add(i * ldc), r[0]);
            _mm512_storeu_ps(c.add(i * ldc + 16), r[1]);
        }
    }
}
