// Embedding rows. Tables are read as u32 words (16-bit floats two per word).

struct Params { n: u32, d: u32, off: u32, kind: u32 }

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

// The same with a table of 16-bit floats (off in elements): f16 when p.kind is 0, bf16 (the
// high half of an f32) when it is 1.
@compute @workgroup_size(256)
fn gather_half(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n) { return; }
    let row = ids[i / p.d];
    let e = p.off + row * p.d + i % p.d;
    let word = table[e / 2u];
    if (p.kind == 0u) {
        let pair = unpack2x16float(word);
        out[i] = select(pair.x, pair.y, e % 2u == 1u);
    } else {
        out[i] = bitcast<f32>(select(word & 0xffffu, word >> 16u, e % 2u == 1u) << 16u);
    }
}
