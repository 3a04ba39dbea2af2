// out [m, n] = x [m, k] · w [n, k]ᵀ for GGUF block-quantized weights (Q4_0, Q4_1, Q5_0, Q8_0,
// Q4_K, Q5_K, Q6_K), decoded here from their blocks (quant_blocks.wgsl, appended by the Rust
// side) against f32 activations. One workgroup of 64 threads per 16 weight rows and tile of up
// to 4 activation rows: 4 threads per weight row, each decoding every 4th 8-weight unit of the
// row once and multiplying it into the tile's rows, then a sum of the 4 partials
// (`sum_lanes`: through workgroup memory and a barrier in sum_lanes_barrier.wgsl, or with
// subgroup shuffles in sum_lanes_subgroup.wgsl where the adapter has subgroups; the Rust side
// appends one of them, and both add in the same order, so both give the same bits). Few, fat workgroups: a software device (lavapipe) pays per workgroup and per
// barrier, and m = 1 (decode) still spreads over n / 16 workgroups.

struct Params {
    m: u32, n: u32, k: u32, x_off: u32,
    // Byte offset of w's first row, bytes per row, 8-weight units per row, the format.
    w_off: u32, row_bytes: u32, units: u32, kind: u32,
    // Output column of this call's first weight row and the output's row stride (a weight past
    // the binding limit is multiplied a window of rows at a time; else 0 and n).
    j_base: u32, out_stride: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

const TILE: u32 = 4u;
// Weight rows per workgroup, and threads per weight row (ROWS · LANES = 64).
const ROWS: u32 = 16u;
const LANES: u32 = 4u;

fn wword(i: u32) -> u32 {
    return w[i];
}

fn x4(at: u32) -> vec4<f32> {
    return vec4<f32>(x[at], x[at + 1u], x[at + 2u], x[at + 3u]);
}

@compute @workgroup_size(64)
fn matmul_quant(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) li: u32) {
    let o = wg.x + wg.y * nwg.x;
    let groups = (p.n + ROWS - 1u) / ROWS;
    let tiles = (p.m + TILE - 1u) / TILE;
    if (o >= groups * tiles) { return; }
    let j = (o % groups) * ROWS + li / LANES;
    let lane = li % LANES;
    let r0 = (o / groups) * TILE;
    let rows = min(TILE, p.m - r0);
    var s = vec4<f32>(0.0);
    if (j < p.n) {
        let row = p.w_off + j * p.row_bytes;
        for (var u = lane; u < p.units; u += LANES) {
            let q = decode_unit(p.kind, row, u);
            for (var r = 0u; r < rows; r++) {
                let xr = p.x_off + (r0 + r) * p.k;
                s[r] += dot(x4(xr + q.i0), q.lo) + dot(x4(xr + q.i1), q.hi);
            }
        }
    }
    let t = sum_lanes(s, li);
    if (lane == 0u && j < p.n) {
        for (var r = 0u; r < rows; r++) {
            out[(r0 + r) * p.out_stride + p.j_base + j] = t[r];
        }
    }
}
