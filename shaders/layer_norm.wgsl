// Row-wise (x - mean) / sqrt(var + eps) * w + b: one workgroup of 256 threads per row.

struct Params { rows: u32, d: u32, x_off: u32, eps: f32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

// `partial` and `reduce` come from reduce256.wgsl.

@compute @workgroup_size(256)
fn layer_norm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
    let row = wg.x + wg.y * nwg.x;
    if (row >= p.rows) { return; }
    let base = p.x_off + row * p.d;
    var s = 0.0;
    for (var j = li; j < p.d; j += 256u) { s += x[base + j]; }
    partial[li] = s;
    reduce(li);
    let mean = partial[0] / f32(p.d);
    workgroupBarrier();
    var q = 0.0;
    for (var j = li; j < p.d; j += 256u) {
        let c = x[base + j] - mean;
        q += c * c;
    }
    partial[li] = q;
    reduce(li);
    let inv = inverseSqrt(partial[0] / f32(p.d) + p.eps);
    for (var j = li; j < p.d; j += 256u) {
        out[row * p.d + j] = (x[base + j] - mean) * inv * w[j] + b[j];
    }
}
