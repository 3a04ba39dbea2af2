// Group normalisation of x [n, .., c]: `group_stats` (one workgroup of 256 threads per
// (sample, group): the mean, then the mean squared deviation) writes (mean, 1/std) pairs;
// `group_apply` normalises, scales and shifts, one thread per element.

struct Params { n: u32, positions: u32, c: u32, groups: u32, x_off: u32, eps: f32, total: u32, _p: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> stats: array<f32>;

// `partial` and `reduce` come from reduce256.wgsl.

@compute @workgroup_size(256)
fn group_stats(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) li: u32) {
    let sg = wg.x + wg.y * nwg.x;
    if (sg >= p.n * p.groups) { return; }
    let s = sg / p.groups;
    let g = sg % p.groups;
    let cg = p.c / p.groups;
    let count = p.positions * cg;
    let base = p.x_off + s * p.positions * p.c + g * cg;
    var sum = 0.0;
    for (var e = li; e < count; e += 256u) { sum += x[base + (e / cg) * p.c + e % cg]; }
    partial[li] = sum;
    reduce(li);
    let mean = partial[0] / f32(count);
    workgroupBarrier();
    var sq = 0.0;
    for (var e = li; e < count; e += 256u) {
        let d = x[base + (e / cg) * p.c + e % cg] - mean;
        sq += d * d;
    }
    partial[li] = sq;
    reduce(li);
    if (li == 0u) {
        stats[2u * sg] = mean;
        stats[2u * sg + 1u] = inverseSqrt(partial[0] / f32(count) + p.eps);
    }
}

@group(0) @binding(3) var<storage, read> gamma: array<f32>;
@group(0) @binding(4) var<storage, read> beta: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn group_apply(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.total) { return; }
    let ch = i % p.c;
    let s = i / (p.positions * p.c);
    let sg = s * p.groups + ch / (p.c / p.groups);
    out[i] = (x[p.x_off + i] - stats[2u * sg]) * stats[2u * sg + 1u] * gamma[ch] + beta[ch];
}
