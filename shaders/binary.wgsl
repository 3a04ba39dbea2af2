// Elementwise ops of two inputs; b is a's shape or one row broadcast over a's rows:
// `linear` and `erf_` come from math.wgsl, appended at build time.
// out[i] = f(a[a_off + i], b[b_off + i % b_len]).

struct Params { n: u32, a_off: u32, b_off: u32, b_len: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear(gid, nwg);
    if (i >= p.n) { return; }
    out[i] = a[p.a_off + i] + b[p.b_off + i % p.b_len];
}

@compute @workgroup_size(256)
fn mul(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear(gid, nwg);
    if (i >= p.n) { return; }
    out[i] = a[p.a_off + i] * b[p.b_off + i % p.b_len];
}

// Gated activations: a is the gate, b the up projection (same shape).
@compute @workgroup_size(256)
fn gated_silu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear(gid, nwg);
    if (i >= p.n) { return; }
    let g = a[p.a_off + i];
    out[i] = g / (1.0 + exp(-g)) * b[p.b_off + i % p.b_len];
}

@compute @workgroup_size(256)
fn gated_gelu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear(gid, nwg);
    if (i >= p.n) { return; }
    let g = a[p.a_off + i];
    out[i] = 0.5 * g * (1.0 + erf_(g * 0.70710678118654752)) * b[p.b_off + i % p.b_len];
}

@compute @workgroup_size(256)
fn gated_quick_gelu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear(gid, nwg);
    if (i >= p.n) { return; }
    let g = a[p.a_off + i];
    out[i] = g / (1.0 + exp(-1.702 * g)) * b[p.b_off + i % p.b_len];
}

fn to_f16(x: f32) -> f32 {
    return unpack2x16float(pack2x16float(vec2<f32>(x, 0.0))).x;
}

// As ggml's GeGLU (and the CPU backend): GELU looked up at the gate rounded to f16, the result
// rounded to f16; the identity from 10 up, 0 from -10 down.
@compute @workgroup_size(256)
fn gated_gelu_tanh(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear(gid, nwg);
    if (i >= p.n) { return; }
    let g = a[p.a_off + i];
    let u = b[p.b_off + i % p.b_len];
    if (g <= -10.0) { out[i] = 0.0; return; }
    if (g >= 10.0) { out[i] = g * u; return; }
    let h = to_f16(g);
    out[i] = to_f16(0.5 * h * (1.0 + tanh(0.79788456080286536 * (h + 0.044715 * h * h * h)))) * u;
}
