// Writes rows of x [tokens, row] (row = kv_heads · head_dim, f32) into a KV cache at
// cache[slots[t]] (f32, or f16 two values per word; row even). The cache is a u32 array.

struct Params { n: u32, row: u32, x_off: u32, cache_off: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> slots: array<u32>;
@group(0) @binding(3) var<storage, read_write> cache: array<u32>;

// One thread per value (n = tokens · row).
@compute @workgroup_size(256)
fn write_f32(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n) { return; }
    let t = i / p.row;
    cache[p.cache_off + slots[t] * p.row + i % p.row] = bitcast<u32>(x[p.x_off + i]);
}

// One thread per pair of values (n = tokens · row / 2); cache_off in f16 values (even).
@compute @workgroup_size(256)
fn write_f16(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n) { return; }
    let e = 2u * i;
    let t = e / p.row;
    let v = vec2<f32>(x[p.x_off + e], x[p.x_off + e + 1u]);
    cache[(p.cache_off + slots[t] * p.row + e % p.row) / 2u] = pack2x16float(v);
}
