// `sum_lanes` of matmul_quant.wgsl through workgroup memory: the sum of the partials of the 4
// consecutive invocations `li & ~3 .. +3`, valid in the first of them, as (p0 + p1) + (p2 + p3).
// Every invocation of the workgroup must call it (it holds a barrier).

var<workgroup> partial: array<vec4<f32>, 64>;

fn sum_lanes(s: vec4<f32>, li: u32) -> vec4<f32> {
    partial[li] = s;
    workgroupBarrier();
    let b = li & ~3u;
    return (partial[b] + partial[b + 1u]) + (partial[b + 2u] + partial[b + 3u]);
}
