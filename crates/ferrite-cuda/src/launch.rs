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
/// Output pixels of one `conv2d_f32` block.
pub const CONV_TILE_PIXELS: usize = 64;
/// Output channels of one `conv2d_f32` block.
pub const CONV_TILE_CHANNELS: usize = 64;
/// Values one `group_norm_partial` block aims to take (16 per thread).
pub const GROUP_NORM_CHUNK_VALUES: usize = 4096;
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

/// `attention_dense`: as [`attention`], one 128-thread block per (query token, head), the query
/// and a chunk of scores in dynamic shared memory; heads up to [`ATTENTION_MAX_HEAD`].
pub fn attention_dense(tokens: usize, heads: usize, head_dim: usize) -> Result<LaunchDims, CudaError> {
    attention(tokens, heads, head_dim)
}

/// `conv2d_f32` over `pixels` output pixels and `c_out` channels: one 256-thread block per tile
/// of 64 pixels x 64 channels.
pub fn conv2d(pixels: usize, c_out: usize) -> Result<LaunchDims, CudaError> {
    dims([pixels.div_ceil(CONV_TILE_PIXELS), c_out.div_ceil(CONV_TILE_CHANNELS), 1], [256, 1, 1], 0)
}

/// How `group_norm_partial` splits the `positions` of one (sample, group) of `cg` channels:
/// `(positions per chunk, chunks)`, chunks of about [`GROUP_NORM_CHUNK_VALUES`] values and at
/// most [`MAX_GRID_YZ`] of them.
pub fn group_norm_chunks(positions: usize, cg: usize) -> (usize, usize) {
    let chunk = GROUP_NORM_CHUNK_VALUES.div_ceil(cg.max(1)).max(positions.div_ceil(MAX_GRID_YZ)).max(1);
    (chunk, positions.div_ceil(chunk))
}

/// `group_norm_partial`: one 256-thread block per (sample-group, chunk).
pub fn group_norm_partial(sample_groups: usize, chunks: usize) -> Result<LaunchDims, CudaError> {
    dims([sample_groups, chunks, 1], [256, 1, 1], 0)
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
    fn conv_tiles_cover_every_pixel_and_channel() {
        let d = conv2d(65, 64).expect("fits");
        assert_eq!((d.grid, d.block), ([2, 1, 1], [256, 1, 1]));
        assert_eq!(conv2d(4 * 1024 * 1024, 129).expect("fits").grid, [65_536, 3, 1]);
        assert!(conv2d(0, 8).is_err(), "no pixels is no launch");
        assert!(conv2d(64, 64 * MAX_GRID_YZ + 1).is_err());
    }

    #[test]
    fn group_norm_chunks_cover_the_positions_within_the_grid() {
        // 4 channels per group: chunks of 1024 positions.
        assert_eq!(group_norm_chunks(4096, 4), (1024, 4));
        assert_eq!(group_norm_chunks(4097, 4), (1024, 5));
        // Wider groups than a chunk: one position per chunk.
        assert_eq!(group_norm_chunks(10, 10_000), (1, 10));
        assert_eq!(group_norm_chunks(561, 1), (4096, 1));
        // Past the grid's y limit the chunks grow.
        for (positions, cg) in [(1usize << 30, 1usize), (1 << 28, 512), (7, 3)] {
            let (chunk, chunks) = group_norm_chunks(positions, cg);
            assert!(chunks <= MAX_GRID_YZ && chunk * chunks >= positions && chunk * (chunks - 1) < positions);
        }
        let d = group_norm_partial(64, 9).expect("fits");
        assert_eq!((d.grid, d.block), ([64, 9, 1], [256, 1, 1]));
    }

    #[test]
    fn dense_attention_is_the_paged_geometry() {
        assert_eq!(attention_dense(5, 3, 512).expect("fits"), attention(5, 3, 512).expect("fits"));
        assert!(attention_dense(1, 1, 640).is_err());
    }

    #[test]
    fn quantize_runs_one_warp_per_block() {
        let d = quantize(5, 576).expect("fits");
        assert_eq!((d.grid, d.block), ([18, 5, 1], [32, 1, 1]));
    }
}
