//! Launch shapes of the kernels (the geometry each kernel of `kernels/` is written for; see
//! `kernels/README.md`), kept here as plain functions so they are tested without a device.

use crate::driver::LaunchDims;
use crate::CudaError;

/// The most blocks along y or z.
pub const MAX_GRID_YZ: usize = 65_535;
/// Blocks along x that grid-stride kernels use at most.
pub const MAX_STRIDE_BLOCKS: usize = 65_535;
/// Weight rows one block of `matmul_q8_1` takes (one per warp).
pub const QMM_ROWS: usize = 4;
/// Activation rows one block of `matmul_q8_1` takes.
pub const QMM_TILE: usize = 8;
/// Tile edge of `matmul_float`.
pub const FMM_TILE: usize = 16;
/// Threads of an `attention_paged` block (also the keys it scores at once).
pub const ATTENTION_THREADS: usize = 128;
/// Widest head `attention_paged` takes.
pub const ATTENTION_MAX_HEAD: usize = 512;
/// Values per q8_1 block.
pub const Q8_1_BLOCK: usize = 32;
/// Bytes per q8_1 block (f16 d, f16 s, 32 int8).
pub const Q8_1_BYTES: usize = 36;

fn dims(grid: [usize; 3], block: [u32; 3], shared_bytes: u32) -> Result<LaunchDims, CudaError> {
    if grid[0] == 0 || grid[0] > u32::MAX as usize / 2 || grid[1] > MAX_GRID_YZ || grid[2] > MAX_GRID_YZ {
        return Err(CudaError::Launch(format!("grid {grid:?} is outside the device's limits")));
    }
    Ok(LaunchDims { grid: [grid[0] as u32, grid[1].max(1) as u32, grid[2].max(1) as u32], block, shared_bytes })
}

/// Grid-stride elementwise kernels over `n` items: 256 threads per block.
pub fn elementwise(n: usize) -> LaunchDims {
    let blocks = n.div_ceil(256).clamp(1, MAX_STRIDE_BLOCKS) as u32;
    LaunchDims { grid: [blocks, 1, 1], block: [256, 1, 1], shared_bytes: 0 }
}

/// One block of `threads` per row (norms, softmax, argmax, gathers, write_kv).
pub fn per_row(rows: usize, threads: u32) -> Result<LaunchDims, CudaError> {
    dims([rows.max(1), 1, 1], [threads, 1, 1], 0)
}

/// `rope_f32`: one 64-thread block per (token, head).
pub fn rope(tokens: usize, heads: usize) -> Result<LaunchDims, CudaError> {
    dims([tokens.max(1), heads, 1], [64, 1, 1], 0)
}

/// `attention_paged`: one block per (query token, head), the query and a chunk of scores in
/// dynamic shared memory.
pub fn attention(tokens: usize, heads: usize, head_dim: usize) -> Result<LaunchDims, CudaError> {
    if head_dim > ATTENTION_MAX_HEAD {
        return Err(CudaError::Launch(format!("attention heads of {head_dim} (at most {ATTENTION_MAX_HEAD})")));
    }
    let shared = ((head_dim + ATTENTION_THREADS) * 4) as u32;
    dims([tokens.max(1), heads, 1], [ATTENTION_THREADS as u32, 1, 1], shared)
}

/// `quantize_q8_1` of `rows` rows of `k` values: one warp per 32-value block.
pub fn quantize(rows: usize, k: usize) -> Result<LaunchDims, CudaError> {
    dims([(k / Q8_1_BLOCK).max(1), rows, 1], [32, 1, 1], 0)
}

/// `matmul_q8_1` of `m` activation rows by `n` weight rows.
pub fn matmul_quant(m: usize, n: usize) -> Result<LaunchDims, CudaError> {
    dims([n.div_ceil(QMM_ROWS), m.div_ceil(QMM_TILE), 1], [(32 * QMM_ROWS) as u32, 1, 1], 0)
}

/// `matmul_float` of `m` activation rows by `n` weight rows: 16x16 output tiles.
pub fn matmul_float(m: usize, n: usize) -> Result<LaunchDims, CudaError> {
    dims([n.div_ceil(FMM_TILE), m.div_ceil(FMM_TILE), 1], [FMM_TILE as u32, FMM_TILE as u32, 1], 0)
}

/// Rows per launch so that a per-row grid along y stays within [`MAX_GRID_YZ`] blocks when each
/// block takes `rows_per_block` rows.
pub fn row_chunk(rows_per_block: usize) -> usize {
    MAX_GRID_YZ * rows_per_block
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elementwise_grids_cover_n_or_stride() {
        assert_eq!(elementwise(0).grid, [1, 1, 1]);
        assert_eq!(elementwise(256).grid, [1, 1, 1]);
        assert_eq!(elementwise(257).grid, [2, 1, 1]);
        assert_eq!(elementwise(1 << 30).grid, [MAX_STRIDE_BLOCKS as u32, 1, 1]);
    }

    #[test]
    fn matmul_grids_cover_every_output() {
        let d = matmul_quant(9, 17).expect("fits");
        assert_eq!(d.grid, [5, 2, 1]);
        assert_eq!(d.block, [128, 1, 1]);
        let f = matmul_float(1, 33).expect("fits");
        assert_eq!(f.grid, [3, 1, 1]);
        assert!(matmul_quant(row_chunk(QMM_TILE) + 1, 8).is_err());
        assert!(matmul_quant(row_chunk(QMM_TILE), 8).is_ok());
    }

    #[test]
    fn attention_takes_heads_up_to_512_and_sizes_its_shared_memory() {
        let d = attention(3, 14, 64).expect("fits");
        assert_eq!((d.grid, d.shared_bytes), ([3, 14, 1], (64 + 128) * 4));
        assert!(attention(1, 1, 513).is_err());
        assert!(attention(1, 70_000, 64).is_err());
    }

    #[test]
    fn quantize_runs_one_warp_per_block() {
        let d = quantize(5, 576).expect("fits");
        assert_eq!((d.grid, d.block), ([18, 5, 1], [32, 1, 1]));
    }
}
