// AdaLN pieces over x [n, t, d] with one row per sample (rows [n, d]), one thread per element:
// `modulate`: x * (1 + a) + b (a the scale rows, b the shift rows);
// `gated_add`: x + a * b (a the gate rows, b a tensor of x's shape).

struct Params { total: u32, t: u32, d: u32, x_off: u32, a_off: u32, b_off: u32, _p0: u32, _p1: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

fn row_index(i: u32) -> u32 {
    return (i / (p.t * p.d)) * p.d + i % p.d;
}

@compute @workgroup_size(256)
fn modulate(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.total) { return; }
    let r = row_index(i);
    out[i] = x[p.x_off + i] * (1.0 + a[p.a_off + r]) + b[p.b_off + r];
}

@compute @workgroup_size(256)
fn gated_add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.total) { return; }
    out[i] = x[p.x_off + i] + a[p.a_off + row_index(i)] * b[p.b_off + i];
}
