// Softmax over the last dimension: one workgroup of 256 threads per row.

struct Params { rows: u32, d: u32, x_off: u32, _pad: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256)
fn softmax(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) li: u32) {
    let row = wg.x + wg.y * nwg.x;
    if (row >= p.rows) { return; }
    let base = p.x_off + row * p.d;
    var m = -3.4028235e38;
    for (var j = li; j < p.d; j += 256u) { m = max(m, x[base + j]); }
    partial[li] = m;
    workgroupBarrier();
    for (var k = 128u; k > 0u; k >>= 1u) {
        if (li < k) { partial[li] = max(partial[li], partial[li + k]); }
        workgroupBarrier();
    }
    let mx = partial[0];
    workgroupBarrier();
    var s = 0.0;
    for (var j = li; j < p.d; j += 256u) {
        let e = exp(x[base + j] - mx);
        out[row * p.d + j] = e;
        s += e;
    }
    partial[li] = s;
    workgroupBarrier();
    for (var k = 128u; k > 0u; k >>= 1u) {
        if (li < k) { partial[li] += partial[li + k]; }
        workgroupBarrier();
    }
    let inv = 1.0 / partial[0];
    for (var j = li; j < p.d; j += 256u) { out[row * p.d + j] *= inv; }
}
