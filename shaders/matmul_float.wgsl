// out [m, n] = x [m, k] · w [n, k]ᵀ for f32, f16 and bf16 weights: one workgroup of 64 threads per
// output element, each thread a strided share of k, then a tree sum.

struct Params { m: u32, n: u32, k: u32, x_off: u32, w_off: u32, _p0: u32, _p1: u32, _p2: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

var<workgroup> partial: array<f32, 64>;

fn finish(li: u32, s: f32, o: u32) {
    partial[li] = s;
    workgroupBarrier();
    for (var k = 32u; k > 0u; k >>= 1u) {
        if (li < k) { partial[li] += partial[li + k]; }
        workgroupBarrier();
    }
    if (li == 0u) { out[o] = partial[0]; }
}

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

// w_off in f16 elements (even: rows of f16 weights start on whole words when k is even).
@compute @workgroup_size(64)
fn matmul_f16(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
    let o = wg.x + wg.y * nwg.x;
    if (o >= p.m * p.n) { return; }
    let r = o / p.n;
    let j = o % p.n;
    var s = 0.0;
    for (var t = li; t < p.k; t += 64u) {
        let e = p.w_off + j * p.k + t;
        let pair = unpack2x16float(w[e / 2u]);
        s += x[p.x_off + r * p.k + t] * select(pair.x, pair.y, e % 2u == 1u);
    }
    finish(li, s, o);
}

// w_off in bf16 elements: a bf16 is the high half of an f32.
@compute @workgroup_size(64)
fn matmul_bf16(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) li: u32) {
    let o = wg.x + wg.y * nwg.x;
    if (o >= p.m * p.n) { return; }
    let r = o / p.n;
    let j = o % p.n;
    var s = 0.0;
    for (var t = li; t < p.k; t += 64u) {
        let e = p.w_off + j * p.k + t;
        let word = w[e / 2u];
        let h16 = select(word & 0xffffu, word >> 16u, e % 2u == 1u);
        s += x[p.x_off + r * p.k + t] * bitcast<f32>(h16 << 16u);
    }
    finish(li, s, o);
}
