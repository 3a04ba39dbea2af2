// out [m, n] = x [m, k] · w [n, k]ᵀ for GGUF block-quantized weights (Q4_0, Q4_1, Q5_0, Q8_0,
// Q4_K, Q5_K, Q6_K), decoded here from their blocks (quant_blocks.wgsl, appended by the Rust
// side) against f32 activations. One workgroup of 64 threads per weight row j and tile of up
// to 4 activation rows: each thread decodes a strided share of the row's 8-weight units once
// and multiplies it into the tile's rows, then a tree sum per row. m = 1 (decode) spreads over
// n workgroups; prefill reuses each decoded unit 4 times.

struct Params {
    m: u32, n: u32, k: u32, x_off: u32,
    // Byte offset of w's first row, bytes per row, 8-weight units per row, the format.
    w_off: u32, row_bytes: u32, units: u32, kind: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

const TILE: u32 = 4u;

var<workgroup> partial: array<vec4<f32>, 64>;

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
    let tiles = (p.m + TILE - 1u) / TILE;
    if (o >= p.n * tiles) { return; }
    let j = o % p.n;
    let r0 = (o / p.n) * TILE;
    let rows = min(TILE, p.m - r0);
    let row = p.w_off + j * p.row_bytes;
    var s = vec4<f32>(0.0);
    for (var u = li; u < p.units; u += 64u) {
        let q = decode_unit(p.kind, row, u);
        for (var r = 0u; r < rows; r++) {
            let xr = p.x_off + (r0 + r) * p.k;
            s[r] += dot(x4(xr + q.i0), q.lo) + dot(x4(xr + q.i1), q.hi);
        }
    }
    partial[li] = s;
    workgroupBarrier();
    for (var h = 32u; h > 0u; h >>= 1u) {
        if (li < h) { partial[li] += partial[li + h]; }
        workgroupBarrier();
    }
    if (li == 0u) {
        let t = partial[0];
        for (var r = 0u; r < rows; r++) {
            out[(r0 + r) * p.n + j] = t[r];
        }
    }
}
