// The end of matmul_float.wgsl's and matmul_f16.wgsl's kernels: the tree sum of the 64
// threads' partials, written to out[o] by thread 0. The module declares `out`; every thread of
// the workgroup must call it (it holds barriers).

var<workgroup> partial: array<f32, 64>;

fn finish(li: u32, s: f32, o: u32) {
    partial[li] = s;
    workgroupBarrier();
    for (var k = 32u; k > 0u; k >>= 1u) {
        if (li < k) { partial[li] += partial[li + k]; }
        workgroupBarrier();
    }
    if (li == 0u) { out[o] = partial[0]; }
}
