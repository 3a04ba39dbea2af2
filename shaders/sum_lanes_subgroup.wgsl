// `sum_lanes` of matmul_quant.wgsl with subgroup shuffles (no workgroup memory, no barrier):
// the 4 consecutive invocations `li & ~3 .. +3` lie in one subgroup (subgroups are at least 4
// wide), and the first of them gets (p0 + p1) + (p2 + p3), the same order as the barrier version.
// (naga accepts the subgroup builtins when the device has the feature; it refuses WGSL's
// `enable subgroups;` directive for now.)

fn sum_lanes(s: vec4<f32>, li: u32) -> vec4<f32> {
    let pair = s + subgroupShuffleXor(s, 1u);
    return pair + subgroupShuffleXor(pair, 2u);
}
