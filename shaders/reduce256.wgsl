// A workgroup sum over 256 threads, shared by the row-statistics kernels (layer_norm.wgsl,
// group_norm.wgsl; the Rust side appends this file to theirs): each thread stores its part in
// `partial[li]`, then `reduce(li)` leaves the total in `partial[0]` for every thread.

var<workgroup> partial: array<f32, 256>;

fn reduce(li: u32) {
    workgroupBarrier();
    for (var k = 128u; k > 0u; k >>= 1u) {
        if (li < k) { partial[li] += partial[li + k]; }
        workgroupBarrier();
    }
}
