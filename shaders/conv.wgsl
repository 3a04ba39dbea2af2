// 2-D convolution of NHWC images: x [n, h, w, c_in] (f32) with w [c_out, kh, kw, c_in] (f32,
// f16 or bf16, read as 32-bit words) plus an optional bias, giving [n, h_out, w_out, c_out].
// Zero padding, one stride for both axes.

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

// Implicit GEMM: output pixels are rows, output channels columns, K = kh·kw·c_in the patch
// index (the weight's row order). A workgroup of 256 threads computes a 64 x 64 tile of
// [pixels, c_out], each thread 4 pixels x 4 channels, with K walked in steps of 16 through
// workgroup memory: the patch values (zero outside the image) and the weights, each loaded once
// per step for the whole tile.
const TM: u32 = 64u;
const TN: u32 = 64u;
const TK: u32 = 16u;

var<workgroup> xs: array<f32, 1024>; // [TK][TM]
var<workgroup> ws: array<f32, 1024>; // [TK][TN]

// Patch value k of output pixel m (0 outside the image or past the ends).
fn patch_value(m: u32, k: u32, pixels: u32, kdim: u32) -> f32 {
    if (m >= pixels || k >= kdim) { return 0.0; }
    let ci = k % p.c_in;
    let kx = (k / p.c_in) % p.kw;
    let ky = k / (p.c_in * p.kw);
    let ox = m % p.w_out;
    let oy = (m / p.w_out) % p.h_out;
    let b = m / (p.w_out * p.h_out);
    let iy = i32(oy * p.stride + ky) - i32(p.pad);
    let ix = i32(ox * p.stride + kx) - i32(p.pad);
    if (iy < 0 || ix < 0 || iy >= i32(p.h) || ix >= i32(p.w)) { return 0.0; }
    return x[p.x_off + ((b * p.h + u32(iy)) * p.w + u32(ix)) * p.c_in + ci];
}

@compute @workgroup_size(256)
fn conv2d(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) li: u32) {
    let pixels = p.total / p.c_out;
    let kdim = p.kh * p.kw * p.c_in;
    let tiles_n = (p.c_out + TN - 1u) / TN;
    let tile = wg.x + wg.y * nwg.x;
    if (tile >= ((pixels + TM - 1u) / TM) * tiles_n) { return; }
    let m0 = (tile / tiles_n) * TM;
    let n0 = (tile % tiles_n) * TN;
    let tx = li % 16u;
    let ty = li / 16u;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < kdim; k0 += TK) {
        // Consecutive threads take consecutive k: neighbouring channels in memory.
        for (var e = li; e < TK * TM; e += 256u) {
            let kk = e % TK;
            let mm = e / TK;
            xs[kk * TM + mm] = patch_value(m0 + mm, k0 + kk, pixels, kdim);
        }
        for (var e = li; e < TK * TN; e += 256u) {
            let kk = e % TK;
            let nn = e / TK;
            var v = 0.0;
            if (n0 + nn < p.c_out && k0 + kk < kdim) { v = weight(p.w_off + (n0 + nn) * kdim + k0 + kk); }
            ws[kk * TN + nn] = v;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            let xb = kk * TM + ty * 4u;
            let wb = kk * TN + tx * 4u;
            let wv = vec4<f32>(ws[wb], ws[wb + 1u], ws[wb + 2u], ws[wb + 3u]);
            acc0 += xs[xb] * wv;
            acc1 += xs[xb + 1u] * wv;
            acc2 += xs[xb + 2u] * wv;
            acc3 += xs[xb + 3u] * wv;
        }
        workgroupBarrier();
    }
    var accs = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var i = 0u; i < 4u; i++) {
        let m = m0 + ty * 4u + i;
        if (m >= pixels) { break; }
        for (var j = 0u; j < 4u; j++) {
            let co = n0 + tx * 4u + j;
            if (co >= p.c_out) { break; }
            var v = accs[i][j];
            if (p.has_bias != 0u) { v += bias[p.b_off + co]; }
            out[m * p.c_out + co] = v;
        }
    }
}
