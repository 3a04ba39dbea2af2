// Direct 2-D convolution of NHWC images: x [n, h, w, c_in] (f32) with w [c_out, kh, kw, c_in]
// (f32, f16 or bf16, read as 32-bit words) plus an optional bias, one thread per output element
// of [n, h_out, w_out, c_out]. Zero padding, one stride for both axes.

struct Params {
    total: u32, h: u32, w: u32, c_in: u32,
    c_out: u32, kh: u32, kw: u32, h_out: u32,
    w_out: u32, stride: u32, pad: u32, x_off: u32,
    w_off: u32, w_kind: u32, has_bias: u32, b_off: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<u32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

// Weight element e (counted from the start of the buffer): kind 0 f32, 1 f16, 2 bf16.
fn weight(e: u32) -> f32 {
    if (p.w_kind == 0u) { return bitcast<f32>(wt[e]); }
    let word = wt[e / 2u];
    let hi = e % 2u == 1u;
    if (p.w_kind == 1u) {
        let pair = unpack2x16float(word);
        return select(pair.x, pair.y, hi);
    }
    return bitcast<f32>(select(word << 16u, word & 0xffff0000u, hi));
}

@compute @workgroup_size(256)
fn conv2d(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.total) { return; }
    let co = i % p.c_out;
    let pix = i / p.c_out;
    let ox = pix % p.w_out;
    let oy = (pix / p.w_out) % p.h_out;
    let b = pix / (p.w_out * p.h_out);
    var acc = 0.0;
    for (var ky = 0u; ky < p.kh; ky++) {
        let iy = i32(oy * p.stride + ky) - i32(p.pad);
        if (iy < 0 || iy >= i32(p.h)) { continue; }
        for (var kx = 0u; kx < p.kw; kx++) {
            let ix = i32(ox * p.stride + kx) - i32(p.pad);
            if (ix < 0 || ix >= i32(p.w)) { continue; }
            let xb = p.x_off + ((b * p.h + u32(iy)) * p.w + u32(ix)) * p.c_in;
            let wb = p.w_off + ((co * p.kh + ky) * p.kw + kx) * p.c_in;
            for (var c = 0u; c < p.c_in; c++) {
                acc += x[xb + c] * weight(wb + c);
            }
        }
    }
    if (p.has_bias != 0u) { acc += bias[p.b_off + co]; }
    out[i] = acc;
}
