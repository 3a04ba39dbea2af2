//! The CPU implementations of the non-matmul ops, one file per op family. Each file carries its
//! tests against a straightforward f64 reference.

pub mod activation;
pub mod attention;
pub mod attention_full;
mod attention_split;
mod attention_tiled;
pub mod conv;
mod dense_flash;
pub mod elementwise;
pub mod embedding;
pub(crate) mod flash;
pub(crate) mod glu;
pub mod group_norm;
pub mod layout;
pub mod modulate;
pub mod norm;
pub mod resample;
pub mod rope;
pub mod rotary;
pub(crate) mod simd;
pub mod softmax;

#[cfg(test)]
pub(crate) mod test_util;

use rayon::prelude::*;

/// Rows per rayon task: enough work per task that scheduling overhead stays small.
pub(crate) fn rows_per_task(row_len: usize) -> usize {
    (16 * 1024 / row_len.max(1)).max(1)
}

/// Below this many elements an op runs on the calling thread: waking other threads costs more
/// than the work (a decode step runs hundreds of such small ops).
pub(crate) const PARALLEL_MIN_ELEMS: usize = 64 * 1024;

/// Applies `f(src_row, dst_row)` to every row, in parallel when the tensor is large.
pub(crate) fn map_rows(src: &[f32], dst: &mut [f32], row: usize, f: impl Fn(&[f32], &mut [f32]) + Sync) {
    if row == 0 {
        return;
    }
    if dst.len() < PARALLEL_MIN_ELEMS {
        dst.chunks_mut(row).zip(src.chunks(row)).for_each(|(d, s)| f(s, d));
        return;
    }
    dst.par_chunks_mut(row).zip(src.par_chunks(row)).with_min_len(rows_per_task(row)).for_each(|(d, s)| f(s, d));
}
