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
/// Weight rows of one `matmul_q8_1_tiled` block's output tile.
pub const QMMT_N: usize = 64;
/// Activation rows of one `matmul_q8_1_tiled` block's output tile.
pub const QMMT_M: usize = 64;
/// Threads of a `matmul_q8_1_tiled` block (8 warps, a 4x4 register tile each).
pub const QMMT_THREADS: u32 = 256;
/// Above this many activation rows the quantized matmul takes `matmul_q8_1_tiled`; up to it,
/// `matmul_q8_1`. The row kernel reads each weight row once per [`QMM_TILE`] activation rows
/// (from global memory or L2, no reuse through shared memory), so from the 9th row on it reads
/// the weights twice or more, while the tiled kernel reads them once per [`QMMT_M`] rows; for
/// up to 8 rows (decode of small batches) one pass over the weights with no barriers is the
/// better shape. llama.cpp's CUDA backend switches from its vector kernel to its tiled one at
/// the same batch size (8). Not yet measured on a GPU: for a few dozen rows the tiled grid has
/// only `ceil(n / 64)` blocks (64 for n = 4096, fewer than an H100's 132 SMs) and one busy warp
/// per 8 rows, so the crossover may lie higher; this constant is the knob.
pub const QMM_TILED_ABOVE: usize = QMM_TILE;
/// Tile edge of `matmul_float`.
pub const FMM_TILE: usize = 16;
/// Threads of an `attention_paged` block (also the keys it scores at once).
pub const ATTENTION_THREADS: usize = 128;
/// Widest head `attention_paged` takes.
pub const ATTENTION_MAX_HEAD: usize = 512;
/// Widest head `attention_paged_tiled` takes; wider heads leave every row to the per-row kernels.
pub const ATTENTION_TILED_MAX_HEAD: usize = 256;
/// Keys `attention_paged_tiled` loads into shared memory at once (one per lane when scoring).
pub const ATTENTION_TILE_KEYS: usize = 32;
/// Rows (query token x q head) of one tile at most (16 per warp when scoring).
pub const ATTENTION_TILE_MAX_ROWS: usize = 64;
/// Output values of one tile at most: 32 accumulators per thread of the 128.
pub const ATTENTION_TILE_MAX_VALUES: usize = 4096;
/// Query tokens of one tile at most.
pub const ATTENTION_TILE_TOKENS: usize = 16;
/// A sequence's run of query rows goes through tiles when it has at least this many rows.
pub const ATTENTION_TILE_MIN_RUN: usize = 8;
/// Dynamic shared memory a tile may use: the 48 KiB a launch gets without opting in, less the
/// kernel's 896 bytes of static shared memory, rounded down.
pub const ATTENTION_TILE_SHARED: usize = 47 * 1024;
/// Blocks the per-row kernels aim for: with fewer (row, head) pairs the keys are split.
pub const ATTENTION_SPLIT_TARGET_BLOCKS: usize = 256;
/// Keys of one split at least.
pub const ATTENTION_SPLIT_MIN_KEYS: usize = 256;
/// Splits of one row at most (`attention_paged_merge` gives each split a thread).
pub const ATTENTION_MAX_SPLITS: usize = 128;
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

/// The tile of `attention_paged_tiled` for one head shape: `tokens` query tokens x `heads` q
/// heads (of one KV head's group) per block, `slices` blocks per KV head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileShape {
    pub tokens: usize,
    pub heads: usize,
    pub slices: usize,
    /// Bytes of dynamic shared memory: queries, one key/value chunk, probabilities, rescales.
    pub shared_bytes: u32,
}

impl TileShape {
    /// Rows (token x head) of a tile.
    pub fn rows(&self) -> usize {
        self.tokens * self.heads
    }
}

/// Floats of dynamic shared memory of a tile of `rows` rows: `qs [rows][d]`,
/// `kv [32][d + 1]`, `ps [rows][32]`, `cs [rows]` (see `kernels/attention.cu`).
fn tile_shared_floats(rows: usize, head_dim: usize) -> usize {
    rows * head_dim + ATTENTION_TILE_KEYS * (head_dim + 1) + rows * (ATTENTION_TILE_KEYS + 1)
}

/// The tile for `q_heads` over `kv_heads` heads of `head_dim`, or `None` when the tiled kernel
/// does not take it (heads wider than [`ATTENTION_TILED_MAX_HEAD`]). Rows per tile: the most,
/// up to [`ATTENTION_TILE_MAX_ROWS`], with at most [`ATTENTION_TILE_MAX_VALUES`] outputs and
/// [`ATTENTION_TILE_SHARED`] bytes of shared memory (64 at head_dim 64, 32 at 128, 13 at 256);
/// the heads of one KV head's group first (all of them when they fit, else slices), then
/// tokens, up to [`ATTENTION_TILE_TOKENS`].
pub fn tile_shape(q_heads: usize, kv_heads: usize, head_dim: usize) -> Option<TileShape> {
    if head_dim == 0 || head_dim > ATTENTION_TILED_MAX_HEAD || kv_heads == 0 || !q_heads.is_multiple_of(kv_heads) {
        return None;
    }
    let group = q_heads / kv_heads;
    let max_rows = (1..=ATTENTION_TILE_MAX_ROWS).rev().find(|&r| {
        r * head_dim <= ATTENTION_TILE_MAX_VALUES && tile_shared_floats(r, head_dim) * 4 <= ATTENTION_TILE_SHARED
    })?;
    let heads = group.min(max_rows);
    let tokens = (max_rows / heads).min(ATTENTION_TILE_TOKENS);
    let shared_bytes = (tile_shared_floats(tokens * heads, head_dim) * 4) as u32;
    Some(TileShape { tokens, heads, slices: group.div_ceil(heads), shared_bytes })
}

/// How the rows left to the per-row kernels run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowPath {
    /// No row is left.
    None,
    /// `attention_paged` over every row of the launch (no tile, no split).
    All,
    /// `attention_paged_split` with one split over the listed rows (the others are in tiles).
    Rows,
    /// `attention_paged_split` over the listed rows, each row's keys in ranges of `keys` keys
    /// (`splits` of them for the longest row), then `attention_paged_merge`.
    Split { splits: usize, keys: usize },
}

/// The kernels of one paged-attention launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PagedPlan {
    /// The tile shape, when some rows go through `attention_paged_tiled`.
    pub tile: Option<TileShape>,
    /// `(first query row, rows)` of each tile, flattened, as the kernel's `tiles` argument.
    pub tiles: Vec<u32>,
    /// Query rows of the per-row kernels (every row not in a tile, rows of no sequence
    /// included), as their `rows` argument.
    pub rows: Vec<u32>,
    pub row_path: RowPath,
}

/// How one launch of paged attention runs, from each sequence's `(q_start, q_len)` and each
/// query row's number of visible keys (0 for a row of no sequence):
///
/// 1. Tiles (prefill): when the heads fit [`tile_shape`], a sequence with at least
///    [`ATTENTION_TILE_MIN_RUN`] query rows is cut into tiles of `tokens` consecutive rows
///    (the last one shorter), each run by `kv_heads * slices` blocks.
/// 2. The other rows take one block per (row, head). When those are fewer than
///    [`ATTENTION_SPLIT_TARGET_BLOCKS`] and the longest row has at least twice
///    [`ATTENTION_SPLIT_MIN_KEYS`] keys, the keys are split (flash-decoding): as many splits as
///    bring the blocks to the target, no split under [`ATTENTION_SPLIT_MIN_KEYS`] keys, at most
///    [`ATTENTION_MAX_SPLITS`]; the split length is rounded up to a whole number of 128-key
///    chunks. Otherwise one pass: `attention_paged` when no row is tiled, else
///    `attention_paged_split` with one split over the remaining rows.
pub fn paged_plan(
    runs: &[(usize, usize)],
    key_lens: &[usize],
    q_heads: usize,
    kv_heads: usize,
    head_dim: usize,
) -> PagedPlan {
    let tokens = key_lens.len();
    let tile = tile_shape(q_heads, kv_heads, head_dim);
    let mut tiled = vec![false; tokens];
    let mut tiles = Vec::new();
    if let Some(shape) = tile {
        for &(start, len) in runs {
            if len < ATTENTION_TILE_MIN_RUN || start + len > tokens {
                continue;
            }
            for first in (start..start + len).step_by(shape.tokens) {
                let n = shape.tokens.min(start + len - first);
                tiles.extend_from_slice(&[first as u32, n as u32]);
                tiled[first..first + n].iter_mut().for_each(|t| *t = true);
            }
        }
    }
    let rows: Vec<u32> = (0..tokens).filter(|&t| !tiled[t]).map(|t| t as u32).collect();
    let row_path = if rows.is_empty() || q_heads == 0 {
        RowPath::None
    } else {
        let blocks = rows.len() * q_heads;
        let longest = rows.iter().map(|&r| key_lens[r as usize]).max().unwrap_or(0);
        let want = ATTENTION_SPLIT_TARGET_BLOCKS.div_ceil(blocks);
        let splits = want.min(longest / ATTENTION_SPLIT_MIN_KEYS).min(ATTENTION_MAX_SPLITS);
        if blocks < ATTENTION_SPLIT_TARGET_BLOCKS && splits >= 2 {
            let keys = longest.div_ceil(splits).div_ceil(ATTENTION_THREADS) * ATTENTION_THREADS;
            RowPath::Split { splits: longest.div_ceil(keys), keys }
        } else if tiles.is_empty() {
            RowPath::All
        } else {
            RowPath::Rows
        }
    };
    PagedPlan { tile: if tiles.is_empty() { None } else { tile }, tiles, rows, row_path }
}

/// `attention_paged_split`: one block per (listed row, head, split), shared memory as
/// [`attention`].
pub fn attention_split(rows: usize, heads: usize, splits: usize, head_dim: usize) -> Result<LaunchDims, CudaError> {
    let d = attention(rows, heads, head_dim)?;
    dims([rows.max(1), heads, splits], d.block, d.shared_bytes)
}

/// `attention_paged_merge`: one block per (listed row, head).
pub fn attention_merge(rows: usize, heads: usize) -> Result<LaunchDims, CudaError> {
    dims([rows.max(1), heads, 1], [ATTENTION_THREADS as u32, 1, 1], 0)
}

/// `attention_paged_tiled`: one block per (tile, KV head, slice of its q heads).
pub fn attention_tiled(tiles: usize, kv_heads: usize, shape: &TileShape) -> Result<LaunchDims, CudaError> {
    dims([tiles, kv_heads * shape.slices, 1], [ATTENTION_THREADS as u32, 1, 1], shape.shared_bytes)
}

/// `quantize_q8_1` of `rows` rows of `k` values: one warp per 32-value block.
pub fn quantize(rows: usize, k: usize) -> Result<LaunchDims, CudaError> {
    dims([(k / Q8_1_BLOCK).max(1), rows, 1], [32, 1, 1], 0)
}

/// `matmul_q8_1` of `m` activation rows by `n` weight rows.
pub fn matmul_quant(m: usize, n: usize) -> Result<LaunchDims, CudaError> {
    dims([n.div_ceil(QMM_ROWS), m.div_ceil(QMM_TILE), 1], [(32 * QMM_ROWS) as u32, 1, 1], 0)
}

/// Whether a quantized matmul of `m` activation rows takes `matmul_q8_1_tiled` (see
/// [`QMM_TILED_ABOVE`]).
pub fn quant_matmul_is_tiled(m: usize) -> bool {
    m > QMM_TILED_ABOVE
}

/// `matmul_q8_1_tiled` of `m` activation rows by `n` weight rows: one 256-thread block per
/// output tile of [`QMMT_N`] weight rows x [`QMMT_M`] activation rows (edge tiles clipped in the
/// kernel), 44.8 KB of static shared memory.
pub fn matmul_quant_tiled(m: usize, n: usize) -> Result<LaunchDims, CudaError> {
    dims([n.div_ceil(QMMT_N), m.div_ceil(QMMT_M), 1], [QMMT_THREADS, 1, 1], 0)
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
    fn quantized_matmuls_above_8_rows_take_the_tiled_kernel_whose_tiles_cover_every_output() {
        assert!(!quant_matmul_is_tiled(1) && !quant_matmul_is_tiled(8));
        assert!(quant_matmul_is_tiled(9) && quant_matmul_is_tiled(512));
        // 77 rows x 70 weight rows: 2 x 2 tiles of 64 x 64, the last ones clipped.
        let d = matmul_quant_tiled(77, 70).expect("fits");
        assert_eq!((d.grid, d.block, d.shared_bytes), ([2, 2, 1], [256, 1, 1], 0));
        assert_eq!(matmul_quant_tiled(9, 64).expect("fits").grid, [1, 1, 1]);
        assert_eq!(matmul_quant_tiled(512, 4096).expect("fits").grid, [64, 8, 1]);
        assert_eq!(matmul_quant_tiled(65, 65).expect("fits").grid, [2, 2, 1]);
        assert!(matmul_quant_tiled(row_chunk(QMMT_M), 8).is_ok());
        assert!(matmul_quant_tiled(row_chunk(QMMT_M) + 1, 8).is_err());
    }

    #[test]
    fn attention_takes_heads_up_to_512_and_sizes_its_shared_memory() {
        let d = attention(3, 14, 64).expect("fits");
        assert_eq!((d.grid, d.shared_bytes), ([3, 14, 1], (64 + 128) * 4));
        assert!(attention(1, 1, 513).is_err());
        assert!(attention(1, 70_000, 64).is_err());
    }

    #[test]
    fn tiles_fit_the_registers_and_48_kib_of_shared_memory() {
        let t = |hq, hk, d| tile_shape(hq, hk, d).map(|s| (s.tokens, s.heads, s.slices, s.shared_bytes));
        // 64 rows at head_dim 64, 32 at 128, 13 at 256 (shared memory bound).
        assert_eq!(t(6, 2, 64), Some((16, 3, 1, (64 * 48 + 32 * 65 + 33 * 48) * 4)));
        assert_eq!(t(32, 8, 128), Some((8, 4, 1, (32 * 128 + 32 * 129 + 33 * 32) * 4)));
        assert_eq!(t(14, 2, 128), Some((4, 7, 1, (28 * 128 + 32 * 129 + 33 * 28) * 4)));
        assert_eq!(t(8, 4, 256), Some((6, 2, 1, (12 * 256 + 32 * 257 + 33 * 12) * 4)));
        // A group wider than a tile: slices of the group, one token per tile.
        assert_eq!(t(40, 1, 128).map(|s| (s.0, s.1, s.2)), Some((1, 32, 2)));
        assert_eq!(t(1, 1, 64).map(|s| (s.0, s.1)), Some((16, 1)));
        // Wider heads, or a bad head split: no tiles.
        assert_eq!(t(8, 4, 257), None);
        assert_eq!(t(6, 4, 64), None);
        for d in 1..=ATTENTION_TILED_MAX_HEAD {
            for group in 1..=40 {
                let s = tile_shape(group * 2, 2, d).expect("tiled");
                assert!(
                    s.rows() <= ATTENTION_TILE_MAX_ROWS && s.rows() * d <= ATTENTION_TILE_MAX_VALUES,
                    "{d} {group}"
                );
                assert!(s.shared_bytes as usize <= ATTENTION_TILE_SHARED, "{d} {group}");
                assert!(s.tokens >= 1 && s.tokens <= ATTENTION_TILE_TOKENS && s.heads * s.slices >= group);
            }
        }
    }

    #[test]
    fn paged_plans_tile_prefill_runs_and_split_long_rows() {
        // Decode rows of short ranges: the single-pass kernel over every row.
        let p = paged_plan(&[(0, 1), (1, 1)], &[100, 511], 32, 8, 128);
        assert_eq!((p.tile, p.tiles.len(), p.row_path), (None, 0, RowPath::All));
        // One long decode row, 32 heads: 8 splits (256 blocks), ranges rounded to 128 keys.
        let p = paged_plan(&[(0, 1)], &[4000], 32, 8, 128);
        assert_eq!((p.rows.clone(), p.row_path), (vec![0], RowPath::Split { splits: 8, keys: 512 }));
        // Keys bound the splits (at least 256 each), and at most 128 splits.
        assert_eq!(paged_plan(&[(0, 1)], &[700], 4, 4, 64).row_path, RowPath::Split { splits: 2, keys: 384 });
        assert_eq!(paged_plan(&[(0, 1)], &[1_000_000], 1, 1, 64).row_path, RowPath::Split { splits: 127, keys: 7936 });
        // Enough (row, head) blocks already: no split.
        let lens = vec![4000; 8];
        let runs: Vec<_> = (0..8).map(|i| (i, 1)).collect();
        assert_eq!(paged_plan(&runs, &lens, 32, 8, 128).row_path, RowPath::All);
        // A 40-row prefill: tiles of 16, 16 and 8 rows; the 3-row run, the row of no sequence
        // and the decode row go to the per-row kernel.
        let lens: Vec<usize> = (1..=40).chain([5, 6, 7, 0, 3000]).collect();
        let p = paged_plan(&[(0, 40), (40, 3), (44, 1)], &lens, 6, 2, 64);
        assert_eq!(p.tile.map(|t| t.tokens), Some(16));
        assert_eq!(p.tiles, vec![0, 16, 16, 16, 32, 8]);
        assert_eq!(p.rows, vec![40, 41, 42, 43, 44]);
        assert_eq!(p.row_path, RowPath::Split { splits: 8, keys: 384 });
        // Without the long row: one pass over the rest.
        let p = paged_plan(&[(0, 40), (40, 3)], &lens[..44], 6, 2, 64);
        assert_eq!(p.row_path, RowPath::Rows);
        // Everything tiled; runs under 8 rows are not.
        let p = paged_plan(&[(0, 8)], &[1; 8], 6, 2, 64);
        assert_eq!((p.tiles, p.row_path), (vec![0, 8], RowPath::None));
        assert_eq!(paged_plan(&[(0, 7)], &[1; 7], 6, 2, 64).row_path, RowPath::All);
        // Heads over 256: no tiles.
        let p = paged_plan(&[(0, 40)], &[1; 40], 4, 4, 320);
        assert_eq!((p.tile, p.rows.len(), p.row_path), (None, 40, RowPath::All));
    }

    #[test]
    fn split_merge_and_tile_grids() {
        let d = attention_split(3, 14, 6, 64).expect("fits");
        assert_eq!((d.grid, d.block, d.shared_bytes), ([3, 14, 6], [128, 1, 1], (64 + 128) * 4));
        assert!(attention_split(1, 1, 1, 513).is_err());
        let m = attention_merge(3, 14).expect("fits");
        assert_eq!((m.grid, m.block, m.shared_bytes), ([3, 14, 1], [128, 1, 1], 0));
        let shape = tile_shape(80, 2, 128).expect("tiled");
        let t = attention_tiled(5, 2, &shape).expect("fits");
        assert_eq!((t.grid, t.block, t.shared_bytes), ([5, 4, 1], [128, 1, 1], shape.shared_bytes));
        assert!(attention_tiled(0, 2, &shape).is_err(), "no tile is no launch");
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
