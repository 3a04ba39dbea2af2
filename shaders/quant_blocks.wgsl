// Decoders of the GGUF (ggml) block formats, shared by matmul_quant.wgsl and gather_quant.wgsl
// (the Rust side appends this file to theirs; it declares no bindings). The including file
// defines `fn wword(i: u32) -> u32`, word `i` of its weight buffer, read as array<u32>.
//
// Blocks are not 4-byte aligned (Q4_0 is 18 bytes, Q4_1 20, Q5_0 22, Q8_0 34, Q6_K 210), so
// everything is addressed in bytes: 4-byte loads at any byte address, f16 values at even ones
// (blocks and rows start at even bytes: every block size is even, the Rust side checks the
// tensor's offset).
//
// A row of weights is cut into units of 8 weights, two runs of 4 (`lo` at elements i0..i0+4,
// `hi` at i1..i1+4 of the row): 4 units per 32-weight block of the legacy formats, 32 per
// 256-weight K-quant block. Each formula is the CPU's (`ferrite_tensor::quant::dequantize`),
// operation by operation.

const Q4_0: u32 = 0u;
const Q4_1: u32 = 1u;
const Q5_0: u32 = 2u;
const Q8_0: u32 = 3u;
const Q4_K: u32 = 4u;
const Q5_K: u32 = 5u;
const Q6_K: u32 = 6u;

struct Unit { lo: vec4<f32>, hi: vec4<f32>, i0: u32, i1: u32 }

// The 4 bytes at byte address `a`, little-endian.
fn load4(a: u32) -> u32 {
    let s = (a & 3u) * 8u;
    let v = wword(a >> 2u);
    if (s == 0u) { return v; }
    return (v >> s) | (wword((a >> 2u) + 1u) << (32u - s));
}

// The byte at `a`.
fn byte_at(a: u32) -> u32 {
    return (wword(a >> 2u) >> ((a & 3u) * 8u)) & 0xFFu;
}

// The f16 at even byte address `a`, as f32.
fn f16_at(a: u32) -> f32 {
    return unpack2x16float(wword(a >> 2u) >> ((a & 2u) * 8u)).x;
}

// The 4 bytes of `v` as lanes.
fn bytes4(v: u32) -> vec4<u32> {
    return (vec4<u32>(v) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xFFu);
}

// The 4 signed bytes of `v` as f32 lanes.
fn sbytes4(v: u32) -> vec4<f32> {
    return vec4<f32>((vec4<i32>(bitcast<i32>(v)) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u));
}

// Q4_0 (18 bytes: d, qs[16]): `d * (q - 8)`; low nibbles are weights 0..16, high 16..32.
fn unit_q4_0(row: u32, u: u32) -> Unit {
    let b = u / 4u;
    let q = u % 4u;
    let a = row + b * 18u;
    let d = f16_at(a);
    let v = bytes4(load4(a + 2u + 4u * q));
    let lo = d * (vec4<f32>(v & vec4<u32>(0xFu)) - 8.0);
    let hi = d * (vec4<f32>(v >> vec4<u32>(4u)) - 8.0);
    return Unit(lo, hi, b * 32u + 4u * q, b * 32u + 16u + 4u * q);
}

// Q4_1 (20 bytes: d, m, qs[16]): `d * q + m`.
fn unit_q4_1(row: u32, u: u32) -> Unit {
    let b = u / 4u;
    let q = u % 4u;
    let a = row + b * 20u;
    let d = f16_at(a);
    let m = f16_at(a + 2u);
    let v = bytes4(load4(a + 4u + 4u * q));
    let lo = d * vec4<f32>(v & vec4<u32>(0xFu)) + m;
    let hi = d * vec4<f32>(v >> vec4<u32>(4u)) + m;
    return Unit(lo, hi, b * 32u + 4u * q, b * 32u + 16u + 4u * q);
}

// Q5_0 (22 bytes: d, qh u32, qs[16]): `d * (q - 16)`, bit 4 of weight j in bit j of qh.
fn unit_q5_0(row: u32, u: u32) -> Unit {
    let b = u / 4u;
    let q = u % 4u;
    let a = row + b * 22u;
    let d = f16_at(a);
    let qh = load4(a + 2u);
    let v = bytes4(load4(a + 6u + 4u * q));
    let l = vec4<u32>(4u * q) + vec4<u32>(0u, 1u, 2u, 3u);
    let lo = (v & vec4<u32>(0xFu)) | (((vec4<u32>(qh) >> l) & vec4<u32>(1u)) << vec4<u32>(4u));
    let hi = (v >> vec4<u32>(4u)) | (((vec4<u32>(qh) >> (l + vec4<u32>(16u))) & vec4<u32>(1u)) << vec4<u32>(4u));
    return Unit(d * (vec4<f32>(lo) - 16.0), d * (vec4<f32>(hi) - 16.0), b * 32u + 4u * q, b * 32u + 16u + 4u * q);
}

// Q8_0 (34 bytes: d, qs[32] signed): `q * d`.
fn unit_q8_0(row: u32, u: u32) -> Unit {
    let b = u / 4u;
    let q = u % 4u;
    let a = row + b * 34u;
    let d = f16_at(a);
    let lo = sbytes4(load4(a + 2u + 8u * q)) * d;
    let hi = sbytes4(load4(a + 6u + 8u * q)) * d;
    return Unit(lo, hi, b * 32u + 8u * q, b * 32u + 8u * q + 4u);
}

// The 6-bit scale and min of sub-block j (0..8) from the 12 scale bytes at `s`
// (ggml's get_scale_min_k4).
fn scale_min_k4(s: u32, j: u32) -> vec2<u32> {
    if (j < 4u) {
        return vec2<u32>(byte_at(s + j) & 63u, byte_at(s + j + 4u) & 63u);
    }
    let sc = (byte_at(s + j + 4u) & 0xFu) | ((byte_at(s + j - 4u) >> 6u) << 4u);
    let m = (byte_at(s + j + 4u) >> 4u) | ((byte_at(s + j) >> 6u) << 4u);
    return vec2<u32>(sc, m);
}

// Q4_K (144 bytes: d, dmin, scales[12], qs[128]) and Q5_K (176 bytes: d, dmin, scales[12],
// qh[32], qs[128]): `(d * sc) * q - (dmin * m)` per 32-weight sub-block. Unit u of a block:
// 64-weight group i = u / 8, positions l0..l0+4 with l0 = 4 (u % 8); low nibbles are
// sub-block 2i, high ones 2i + 1; Q5_K's fifth bits are bits 2i and 2i + 1 of qh[l].
fn unit_qk45(row: u32, u: u32, five: bool) -> Unit {
    let b = u / 32u;
    let i = (u % 32u) / 8u;
    let l0 = (u % 8u) * 4u;
    let a = row + b * select(144u, 176u, five);
    let d = f16_at(a);
    let dmin = f16_at(a + 2u);
    let sm0 = scale_min_k4(a + 4u, 2u * i);
    let sm1 = scale_min_k4(a + 4u, 2u * i + 1u);
    let dl0 = d * f32(sm0.x);
    let ml0 = dmin * f32(sm0.y);
    let dl1 = d * f32(sm1.x);
    let ml1 = dmin * f32(sm1.y);
    var v: vec4<u32>;
    var lo: vec4<u32>;
    var hi: vec4<u32>;
    if (five) {
        v = bytes4(load4(a + 48u + 32u * i + l0));
        let qh = bytes4(load4(a + 16u + l0));
        lo = (v & vec4<u32>(0xFu)) | (((qh >> vec4<u32>(2u * i)) & vec4<u32>(1u)) << vec4<u32>(4u));
        hi = (v >> vec4<u32>(4u)) | (((qh >> vec4<u32>(2u * i + 1u)) & vec4<u32>(1u)) << vec4<u32>(4u));
    } else {
        v = bytes4(load4(a + 16u + 32u * i + l0));
        lo = v & vec4<u32>(0xFu);
        hi = v >> vec4<u32>(4u);
    }
    let i0 = b * 256u + 64u * i + l0;
    return Unit(dl0 * vec4<f32>(lo) - ml0, dl1 * vec4<f32>(hi) - ml1, i0, i0 + 32u);
}

// Q6_K (210 bytes: ql[128], qh[64], scales[16] signed, d): `(d * sc) * (q - 32)` per
// 16-weight sub-block. Each 128-weight half n has, for l in 0..32, weights 32t + l (t = 0..4)
// from ql[64n + l] (t = 0, 2: low, high nibble), ql[64n + 32 + l] (t = 1, 3) and bits 2t, 2t + 1
// of qh[32n + l]. Unit u of a block: half n = u / 16, tp = (u % 16) / 8 (t = tp and tp + 2),
// positions l0..l0+4 with l0 = 4 (u % 8).
fn unit_q6_k(row: u32, u: u32) -> Unit {
    let b = u / 32u;
    let n = (u % 32u) / 16u;
    let tp = (u % 16u) / 8u;
    let l0 = (u % 8u) * 4u;
    let a = row + b * 210u;
    let d = f16_at(a + 208u);
    let ql = bytes4(load4(a + 64u * n + 32u * tp + l0));
    let qh = bytes4(load4(a + 128u + 32u * n + l0));
    let lo = (ql & vec4<u32>(0xFu)) | (((qh >> vec4<u32>(2u * tp)) & vec4<u32>(3u)) << vec4<u32>(4u));
    let hi = (ql >> vec4<u32>(4u)) | (((qh >> vec4<u32>(2u * tp + 4u)) & vec4<u32>(3u)) << vec4<u32>(4u));
    let s = a + 192u + 8u * n + l0 / 16u;
    let sc_lo = f32(bitcast<i32>(byte_at(s + 2u * tp) << 24u) >> 24u);
    let sc_hi = f32(bitcast<i32>(byte_at(s + 2u * tp + 4u) << 24u) >> 24u);
    let dl_lo = d * sc_lo;
    let dl_hi = d * sc_hi;
    let i0 = b * 256u + 128u * n + 32u * tp + l0;
    return Unit(dl_lo * vec4<f32>(vec4<i32>(lo) - 32), dl_hi * vec4<f32>(vec4<i32>(hi) - 32), i0, i0 + 64u);
}

// Unit u of the row starting at byte `row`, for format `kind`.
fn decode_unit(kind: u32, row: u32, u: u32) -> Unit {
    switch kind {
        case Q4_0: { return unit_q4_0(row, u); }
        case Q4_1: { return unit_q4_1(row, u); }
        case Q5_0: { return unit_q5_0(row, u); }
        case Q8_0: { return unit_q8_0(row, u); }
        case Q4_K: { return unit_qk45(row, u, false); }
        case Q5_K: { return unit_qk45(row, u, true); }
        case Q6_K, default: { return unit_q6_k(row, u); }
    }
}
