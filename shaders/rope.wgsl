// Rotary embeddings of x [tokens, heads, head_dim]: one thread per element. Angles as the CPU
// backend (and ggml) build them: pos * freq_scale, times step = theta^(-2/dim) once per pair.

struct Params {
    n: u32, heads: u32, head_dim: u32, rot_dim: u32,
    x_off: u32, neox: u32, step: f32, freq_scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> positions: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn rope(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n) { return; }
    let d = i % p.head_dim;
    let token = i / (p.heads * p.head_dim);
    let head_base = i - d;
    let v = x[p.x_off + i];
    if (d >= p.rot_dim) {
        out[i] = v;
        return;
    }
    let half = p.rot_dim / 2u;
    var pair: u32;
    var first: bool;
    if (p.neox != 0u) {
        pair = d % half;
        first = d < half;
    } else {
        pair = d / 2u;
        first = d % 2u == 0u;
    }
    var theta = f32(positions[token]) * p.freq_scale;
    for (var k = 0u; k < pair; k++) { theta *= p.step; }
    let c = cos(theta);
    let s = sin(theta);
    var a: u32;
    var b: u32;
    if (p.neox != 0u) { a = pair; b = pair + half; } else { a = 2u * pair; b = 2u * pair + 1u; }
    let x0 = x[p.x_off + head_base + a];
    let x1 = x[p.x_off + head_base + b];
    if (first) { out[i] = x0 * c - x1 * s; } else { out[i] = x0 * s + x1 * c; }
}
