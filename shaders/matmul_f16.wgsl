// out [m, n] = x [m, k] · w [n, k]ᵀ for f16 weights read as WGSL `f16` (adapters with
// shader-f16; matmul_float.wgsl's `matmul_half` unpacks them from u32 words elsewhere). The f16
// to f32 conversion is exact and the products and sums are f32 in the same order, so both give
// the same bits. One workgroup of 64 threads per output element, a strided share of k each, then
// a tree sum.

enable f16;

struct Params { m: u32, n: u32, k: u32, x_off: u32, w_off: u32, kind: u32, _p1: u32, _p2: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f16>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn matmul_f16(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
    let o = wg.x + wg.y * nwg.x;
    if (o >= p.m * p.n) { return; }
    let r = o / p.n;
    let j = o % p.n;
    var s = 0.0;
    for (var t = li; t < p.k; t += 64u) {
        s += x[p.x_off + r * p.k + t] * f32(w[p.w_off + j * p.k + t]);
    }
    finish(li, s, o);
}
