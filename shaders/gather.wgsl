// Embedding rows and float casts. Tables and f16 data are read as u32 words.

struct Params { n: u32, d: u32, off: u32, _pad: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> table: array<u32>;
@group(0) @binding(2) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

// out[t * d + j] = table[ids[t]][j], table f32 (off in elements).
@compute @workgroup_size(256)
fn gather_f32(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n) { return; }
    let row = ids[i / p.d];
    out[i] = bitcast<f32>(table[p.off + row * p.d + i % p.d]);
}

// The same with an f16 table (off in f16 elements, even).
@compute @workgroup_size(256)
fn gather_f16(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n) { return; }
    let row = ids[i / p.d];
    let e = p.off + row * p.d + i % p.d;
    let pair = unpack2x16float(table[e / 2u]);
    out[i] = select(pair.x, pair.y, e % 2u == 1u);
}

// The same with a bf16 table (off in bf16 elements): a bf16 is the high half of an f32.
@compute @workgroup_size(256)
fn gather_bf16(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n) { return; }
    let row = ids[i / p.d];
    let e = p.off + row * p.d + i % p.d;
    let word = table[e / 2u];
    let h16 = select(word & 0xffffu, word >> 16u, e % 2u == 1u);
    out[i] = bitcast<f32>(h16 << 16u);
}
