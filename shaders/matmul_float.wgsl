// out [m, n] = x [m, k] · w [n, k]ᵀ for f32, f16 and bf16 weights: one workgroup of 64 threads per
// output element, each thread a strided share of k, then a tree sum.

struct Params { m: u32, n: u32, k: u32, x_off: u32, w_off: u32, kind: u32, _p1: u32, _p2: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

// `finish` (the 64-thread tree sum into out[o]) is in finish64.wgsl, appended by the Rust side.

@compute @workgroup_size(64)
fn matmul_f32(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
    let o = wg.x + wg.y * nwg.x;
    if (o >= p.m * p.n) { return; }
    let r = o / p.n;
    let j = o % p.n;
    var s = 0.0;
    for (var t = li; t < p.k; t += 64u) {
        s += x[p.x_off + r * p.k + t] * bitcast<f32>(w[p.w_off + j * p.k + t]);
    }
    finish(li, s, o);
}

// Element e of a table of 16-bit floats stored two per u32 word: f16 when p.kind is 0, bf16 (the
// high half of an f32) when it is 1.
fn half_at(e: u32) -> f32 {
    let word = w[e / 2u];
    if (p.kind == 0u) {
        let pair = unpack2x16float(word);
        return select(pair.x, pair.y, e % 2u == 1u);
    }
    return bitcast<f32>(select(word & 0xffffu, word >> 16u, e % 2u == 1u) << 16u);
}

// w_off in 16-bit elements (even: rows of 16-bit weights start on whole words when k is even).
@compute @workgroup_size(64)
fn matmul_half(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) li: u32) {
    let o = wg.x + wg.y * nwg.x;
    if (o >= p.m * p.n) { return; }
    let r = o / p.n;
    let j = o % p.n;
    var s = 0.0;
    for (var t = li; t < p.k; t += 64u) {
        s += x[p.x_off + r * p.k + t] * half_at(p.w_off + j * p.k + t);
    }
    finish(li, s, o);
}
