// Rotary embedding of x [tokens, heads, head_dim] from angle tables cos/sin [tokens, head_dim/2],
// one thread per element; pairs interleaved (2i, 2i+1) or NeoX halves (i, i + head_dim/2).

struct Params { total: u32, heads: u32, head_dim: u32, neox: u32, x_off: u32, c_off: u32, s_off: u32, _p: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> cos_t: array<f32>;
@group(0) @binding(3) var<storage, read> sin_t: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn rotary(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.total) { return; }
    let d = i % p.head_dim;
    let token = i / (p.heads * p.head_dim);
    let head_base = i - d;
    let half = p.head_dim / 2u;
    var pair: u32;
    var a: u32;
    var b: u32;
    if (p.neox != 0u) {
        pair = d % half;
        a = pair;
        b = pair + half;
    } else {
        pair = d / 2u;
        a = 2u * pair;
        b = a + 1u;
    }
    let c = cos_t[p.c_off + token * half + pair];
    let s = sin_t[p.s_off + token * half + pair];
    let x0 = x[p.x_off + head_base + a];
    let x1 = x[p.x_off + head_base + b];
    if (d == a) { out[i] = x0 * c - x1 * s; } else { out[i] = x1 * c + x0 * s; }
}
