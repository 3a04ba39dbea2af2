// Float casts between f32 and f16 (both read and written as u32 words).

struct Params { n: u32, off: u32, total: u32, _pad: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;

// Two f16 out per thread: dst word i packs elements 2i and 2i+1 (n: f16 words to write).
@compute @workgroup_size(256)
fn f32_to_f16(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n) { return; }
    let lo = bitcast<f32>(src[p.off + 2u * i]);
    var hi = 0.0;
    if (2u * i + 1u < p.total) { hi = bitcast<f32>(src[p.off + 2u * i + 1u]); }
    dst[i] = pack2x16float(vec2<f32>(lo, hi));
}

// One f32 out per thread (n: elements; off in f16 elements).
@compute @workgroup_size(256)
fn f16_to_f32(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n) { return; }
    let e = p.off + i;
    let pair = unpack2x16float(src[e / 2u]);
    dst[i] = bitcast<u32>(select(pair.x, pair.y, e % 2u == 1u));
}
