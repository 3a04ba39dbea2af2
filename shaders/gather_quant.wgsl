// Embedding rows of GGUF block-quantized tables (Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K),
// decoded with quant_blocks.wgsl (appended by the Rust side): one thread per 8-weight unit of
// an output row, writing its 8 f32 values.

struct Params {
    // Units in all (ids × units per row), units per row, byte offset of the table, the format.
    total: u32, units: u32, off: u32, kind: u32,
    // Bytes per table row, elements per row, and the window of table rows bound (a table past
    // the binding limit is gathered from a window of rows at a time; else 0 and all rows).
    row_bytes: u32, d: u32, row0: u32, rows: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> table: array<u32>;
@group(0) @binding(2) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn wword(i: u32) -> u32 {
    return table[i];
}

@compute @workgroup_size(256)
fn gather_quant(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.total) { return; }
    let t = i / p.units;
    let id = ids[t];
    if (id < p.row0 || id - p.row0 >= p.rows) { return; }
    let q = decode_unit(p.kind, p.off + (id - p.row0) * p.row_bytes, i % p.units);
    let o = t * p.d;
    for (var l = 0u; l < 4u; l++) {
        out[o + q.i0 + l] = q.lo[l];
        out[o + q.i1 + l] = q.hi[l];
    }
}
