// Nearest-neighbour upsampling of x [n, h, w, c] by `factor`, one thread per output element.

struct Params { total: u32, h: u32, w: u32, c: u32, factor: u32, x_off: u32, _p0: u32, _p1: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn upsample_nearest(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.total) { return; }
    let ch = i % p.c;
    let px = i / p.c;
    let wo = p.w * p.factor;
    let ho = p.h * p.factor;
    let ox = px % wo;
    let oy = (px / wo) % ho;
    let b = px / (wo * ho);
    out[i] = x[p.x_off + ((b * p.h + oy / p.factor) * p.w + ox / p.factor) * p.c + ch];
}
