// matmul_quant.cu: out[r*n + j] = dot(weight row j, activation row r) for GGUF-quantized
// weights and q8_1-quantized activations (quantize.cu), with integer __dp4a dot products in the
// manner of llama.cpp's vec_dot_*_q8_1.
//
// Launch: block 128 = 4 warps, grid = (ceil(n/4), ceil(m/8)). Warp w owns weight row
// j = blockIdx.x*4 + w and activation rows r0 = blockIdx.y*8 .. r0+8 (clipped to m): each lane
// decodes a unit of the weight row once into registers and dots it with up to 8 activation rows,
// lanes striding over the row's units (adjacent lanes read adjacent bytes); then one warp_sum per
// activation row and lane 0 writes. Units:
//   Q4_0, Q4_1, Q5_0, Q8_0: one 32-value block (= one q8_1 block);
//   Q4_K, Q5_K: one 64-value group of a 256 super-block (sub-blocks 2i, 2i+1: q8_1 blocks 2i, 2i+1);
//   Q6_K: 32 values of a 256 super-block (two 16-value sub-blocks with their own scales).
// Activation block (36 bytes): f16 d_x, f16 s_x = d_x*sum(q), i8 q[32].
//
// matmul_q8_1_tiled (end of the file) computes the same product for batches of more than 8
// activation rows (prefill, large decode batches): 64 x 64 output tiles through shared memory,
// __dp4a only (no tensor-core path yet).

#define MMQ_WARPS 4u
#define MMQ_ROWS 8u
#define NIB_LO(v) ((v) & 0x0F0F0F0F)
#define NIB_HI(v) (((v) >> 4) & 0x0F0F0F0F)

// Bits 0..3 of h moved to bit 4 of bytes 0..3 (Q5_0's fifth bits of 4 consecutive values).
__device__ FERRITE_INLINE int spread_bits4(unsigned h) {
    return (int)(((h & 1u) << 4) | ((h & 2u) << 11) | ((h & 4u) << 18) | ((h & 8u) << 25));
}

// An int of q8_1 activations: 4-aligned, as quantize_q8_1's output is when it starts at a
// 4-aligned address (36-byte blocks, qs at +4), so one 32-bit load; weights use ld_i32.
__device__ FERRITE_INLINE int ld_x32(const unsigned char* p) {
#ifndef FERRITE_EMU
    return *(const int*)p;
#else
    return ld_i32(p);
#endif
}

// Bytes b in 0..2c-1 to the signed bytes b - c, with no borrow between bytes: b + (0x80 - c)
// stays below 0x100, and flipping bit 7 then subtracts 0x80 (mod 256). c = 8 (Q4_0 nibbles),
// 16 (Q5_0's 5-bit values) or 32 (Q6_K's 6-bit values).
__device__ FERRITE_INLINE int sub_bytes(int v, unsigned c) {
    return (int)(((unsigned)v + (0x80u - c) * 0x01010101u) ^ 0x80808080u);
}

// Sum of the 4 signed bytes of u, added to c (dp4a with ones).
__device__ FERRITE_INLINE int byte_sum(int u, int c) { return __dp4a(0x01010101, u, c); }

// ---- legacy formats: unit = one 32-value block ---------------------------------------------------

// lo[i] holds values 4i..4i+3 and hi[i] values 16+4i..16+4i+3 (as bytes); the activation ints
// u[i] (values 4i..4i+3) pair with lo[i] and u[4+i] with hi[i].
__device__ FERRITE_INLINE int dot_nibbles(const int* lo, const int* hi, const unsigned char* xq) {
    int s = 0;
    FERRITE_UNROLL
    for (unsigned i = 0; i < 4u; ++i) {
        s = __dp4a(lo[i], ld_x32(xq + 4u * i), s);
        s = __dp4a(hi[i], ld_x32(xq + 16u + 4u * i), s);
    }
    return s;
}

__device__ FERRITE_INLINE void mmq_legacy(const unsigned char* wr, const unsigned char* xr, unsigned xrow,
                                          unsigned nr, unsigned nb, unsigned lane, unsigned kind, float* acc) {
    const unsigned bytes = quant_block_bytes(kind);
    for (unsigned b = lane; b < nb; b += 32u) {
        const unsigned char* wb = wr + (unsigned long long)b * bytes;
        const float dw = ld_f16(wb);
        const unsigned char* xb = xr + (unsigned long long)b * Q8_1_BYTES;
        if (kind == KIND_Q8_0) {
            int v[8];
            FERRITE_UNROLL
            for (unsigned i = 0; i < 8u; ++i) v[i] = ld_i32(wb + 2u + 4u * i);
            FERRITE_UNROLL
            for (unsigned rr = 0; rr < MMQ_ROWS; ++rr) {
                if (rr < nr) {
                    const unsigned char* x = xb + (unsigned long long)rr * xrow;
                    int s = 0;
                    FERRITE_UNROLL
                    for (unsigned i = 0; i < 8u; ++i) s = __dp4a(v[i], ld_x32(x + 4u + 4u * i), s);
                    acc[rr] += dw * (ld_f16(x) * (float)s);
                }
            }
            continue;
        }
        // Q4_0, Q4_1, Q5_0: 16 bytes of nibbles at offset 2, 4 or 6.
        const unsigned qoff = kind == KIND_Q4_0 ? 2u : kind == KIND_Q4_1 ? 4u : 6u;
        int lo[4], hi[4];
        FERRITE_UNROLL
        for (unsigned i = 0; i < 4u; ++i) {
            const int v = ld_i32(wb + qoff + 4u * i);
            lo[i] = NIB_LO(v);
            hi[i] = NIB_HI(v);
        }
        if (kind == KIND_Q5_0) {
            const unsigned qh = (unsigned)ld_i32(wb + 2);
            FERRITE_UNROLL
            for (unsigned i = 0; i < 4u; ++i) {
                lo[i] |= spread_bits4(qh >> (4u * i));
                hi[i] |= spread_bits4(qh >> (16u + 4u * i));
            }
        }
        // Weight = d_w*(q - c) (c = 8 for Q4_0, 16 for Q5_0): the bytes become q - c, so sumi is
        // the exact sum((q - c)*q_x) and the block's sum d_w*d_x*sumi (as ggml's CPU
        // vec_dot_q4_0_q8_0; llama.cpp's CUDA d_w*(d_x*sumi' - c*s_x) with f16 s_x is less exact).
        // Q4_1, weight = d_w*q + m_w: sum = d_w*d_x*sumi + m_w*s_x (s_x = d_x*sum(q_x)).
        if (kind != KIND_Q4_1) {
            const unsigned c = kind == KIND_Q4_0 ? 8u : 16u;
            FERRITE_UNROLL
            for (unsigned i = 0; i < 4u; ++i) {
                lo[i] = sub_bytes(lo[i], c);
                hi[i] = sub_bytes(hi[i], c);
            }
        }
        const float mw = kind == KIND_Q4_1 ? ld_f16(wb + 2) : 0.0f;
        FERRITE_UNROLL
        for (unsigned rr = 0; rr < MMQ_ROWS; ++rr) {
            if (rr < nr) {
                const unsigned char* x = xb + (unsigned long long)rr * xrow;
                const float sumi = (float)dot_nibbles(lo, hi, x + 4);
                const float dx = ld_f16(x);
                if (kind == KIND_Q4_1) {
                    acc[rr] += dw * dx * sumi + mw * ld_f16(x + 2);
                } else {
                    acc[rr] += dw * (dx * sumi);
                }
            }
        }
    }
}

// ---- Q4_K / Q5_K: unit = 64-value group i (0..3) of super-block sb --------------------------------

__device__ FERRITE_INLINE void mmq_q45_k(const unsigned char* wr, const unsigned char* xr, unsigned xrow,
                                         unsigned nr, unsigned nsb, unsigned lane, bool five, float* acc) {
    const unsigned bytes = five ? 176u : 144u;
    const unsigned qoff = five ? 48u : 16u;
    for (unsigned u = lane; u < nsb * 4u; u += 32u) {
        const unsigned sb = u / 4u, i = u % 4u;
        const unsigned char* wb = wr + (unsigned long long)sb * bytes;
        const float d = ld_f16(wb), dmin = ld_f16(wb + 2);
        unsigned sc0, m0, sc1, m1;
        scale_min_k4(wb + 4, 2u * i, &sc0, &m0);
        scale_min_k4(wb + 4, 2u * i + 1u, &sc1, &m1);
        // lo[t]: values 4t..4t+3 of sub-block 2i; hi[t]: the same positions of sub-block 2i+1.
        int lo[8], hi[8];
        FERRITE_UNROLL
        for (unsigned t = 0; t < 8u; ++t) {
            const int v = ld_i32(wb + qoff + 32u * i + 4u * t);
            lo[t] = NIB_LO(v);
            hi[t] = NIB_HI(v);
            if (five) {
                // bit s of qh[l] is the fifth bit of sub-block s, position l.
                const unsigned h = (unsigned)ld_i32(wb + 16u + 4u * t);
                lo[t] |= (int)(((h >> (2u * i)) & 0x01010101u) << 4);
                hi[t] |= (int)(((h >> (2u * i + 1u)) & 0x01010101u) << 4);
            }
        }
        const unsigned char* xb = xr + (unsigned long long)(sb * 8u + 2u * i) * Q8_1_BYTES;
        // Weight = d*sc*q - dmin*m per sub-block: sum over the two sub-blocks s of
        // d*sc_s*d_x_s*sum(q*q_x) - dmin*m_s*d_x_s*sum(q_x), integer sums exact via dp4a.
        FERRITE_UNROLL
        for (unsigned rr = 0; rr < MMQ_ROWS; ++rr) {
            if (rr < nr) {
                const unsigned char* x0 = xb + (unsigned long long)rr * xrow;
                const unsigned char* x1 = x0 + Q8_1_BYTES;
                int dot0 = 0, dot1 = 0, su0 = 0, su1 = 0;
                FERRITE_UNROLL
                for (unsigned t = 0; t < 8u; ++t) {
                    const int a = ld_x32(x0 + 4u + 4u * t), b = ld_x32(x1 + 4u + 4u * t);
                    dot0 = __dp4a(lo[t], a, dot0);
                    dot1 = __dp4a(hi[t], b, dot1);
                    su0 = byte_sum(a, su0);
                    su1 = byte_sum(b, su1);
                }
                const float dx0 = ld_f16(x0), dx1 = ld_f16(x1);
                const float sd = dx0 * (float)((int)sc0 * dot0) + dx1 * (float)((int)sc1 * dot1);
                const float sm = dx0 * (float)((int)m0 * su0) + dx1 * (float)((int)m1 * su1);
                acc[rr] += d * sd - dmin * sm;
            }
        }
    }
}

// ---- Q6_K: unit = 32 values e0 = 128n + 32t of super-block sb (q8_1 block sb*8 + 4n + t) ------

__device__ FERRITE_INLINE void mmq_q6_k(const unsigned char* wr, const unsigned char* xr, unsigned xrow,
                                        unsigned nr, unsigned nsb, unsigned lane, float* acc) {
    for (unsigned u = lane; u < nsb * 8u; u += 32u) {
        const unsigned sb = u / 8u, n = (u % 8u) / 4u, t = u % 4u;
        const unsigned char* wb = wr + (unsigned long long)sb * 210u;
        const float d = ld_f16(wb + 208);
        // Value 32t + l of half n: nibble (t >> 1) of ql[64n + 32(t & 1) + l], bits 2t, 2t+1 of
        // qh[32n + l]: 6-bit q, kept as the signed bytes q - 32 (the weight is d*sc*(q - 32)).
        const unsigned char* ql = wb + 64u * n + 32u * (t & 1u);
        const unsigned char* qh = wb + 128u + 32u * n;
        const unsigned qshift = 4u * (t >> 1), hshift = 2u * t;
        int v[8];
        FERRITE_UNROLL
        for (unsigned c = 0; c < 8u; ++c) {
            const unsigned l4 = ((unsigned)ld_i32(ql + 4u * c) >> qshift) & 0x0F0F0F0Fu;
            const unsigned h2 = ((unsigned)ld_i32(qh + 4u * c) >> hshift) & 0x03030303u;
            v[c] = sub_bytes((int)(l4 | (h2 << 4)), 32u);
        }
        // Scales of the two 16-value sub-blocks (8n + 2t, 8n + 2t + 1), signed.
        const int sc0 = (int)(signed char)wb[192u + 8u * n + 2u * t];
        const int sc1 = (int)(signed char)wb[192u + 8u * n + 2u * t + 1u];
        const unsigned char* xb = xr + (unsigned long long)(sb * 8u + 4u * n + t) * Q8_1_BYTES;
        FERRITE_UNROLL
        for (unsigned rr = 0; rr < MMQ_ROWS; ++rr) {
            if (rr < nr) {
                const unsigned char* x = xb + (unsigned long long)rr * xrow;
                int dot0 = 0, dot1 = 0;
                FERRITE_UNROLL
                for (unsigned c = 0; c < 4u; ++c) {
                    dot0 = __dp4a(v[c], ld_x32(x + 4u + 4u * c), dot0);
                    dot1 = __dp4a(v[4u + c], ld_x32(x + 20u + 4u * c), dot1);
                }
                const int sumi = sc0 * dot0 + sc1 * dot1;
                acc[rr] += d * (ld_f16(x) * (float)sumi);
            }
        }
    }
}

extern "C" __global__ void matmul_q8_1(const unsigned char* w, const unsigned char* xq, float* out, unsigned m,
                                       unsigned n, unsigned k, unsigned row_bytes, unsigned kind) {
    const unsigned lane = threadIdx.x & 31u, warp = threadIdx.x >> 5;
    const unsigned j = blockIdx.x * MMQ_WARPS + warp;
    const unsigned r0 = blockIdx.y * MMQ_ROWS;
    const unsigned xrow = (k / 32u) * Q8_1_BYTES;  // bytes per activation row
    float acc[MMQ_ROWS];
    FERRITE_UNROLL
    for (unsigned rr = 0; rr < MMQ_ROWS; ++rr) acc[rr] = 0.0f;
    // No early return: the whole warp skips the work together but still reaches the shuffles.
    if (j < n && r0 < m) {
        const unsigned char* wr = w + (unsigned long long)j * row_bytes;
        const unsigned char* xr = xq + (unsigned long long)r0 * xrow;
        const unsigned nr = min_u32(MMQ_ROWS, m - r0);
        if (kind < KIND_Q4_K) {
            mmq_legacy(wr, xr, xrow, nr, k / 32u, lane, kind, acc);
        } else if (kind == KIND_Q6_K) {
            mmq_q6_k(wr, xr, xrow, nr, k / 256u, lane, acc);
        } else {
            mmq_q45_k(wr, xr, xrow, nr, k / 256u, lane, kind == KIND_Q5_K, acc);
        }
    }
    FERRITE_UNROLL
    for (unsigned rr = 0; rr < MMQ_ROWS; ++rr) {
        const float v = warp_sum(acc[rr]);
        if (lane == 0u && j < n && r0 + rr < m) out[(unsigned long long)(r0 + rr) * n + j] = v;
    }
}

// ==== matmul_q8_1_tiled: the same product for batches (m > 8), tiled through shared memory ======
//
// Launch: block 256 = 8 warps, grid = (ceil(n/64), ceil(m/64)); same arguments as matmul_q8_1.
// Block (bx, by) computes the output tile of weight rows j0 = 64*bx .. +64 and activation rows
// r0 = 64*by .. +64 (clipped to n and m). K is walked in slices of 8 q8_1 blocks (256 values:
// one K-quant super-block; the last slice of a legacy row may be shorter). For each slice:
//   load:    the tile's weight blocks are decoded to int8 values (one 32-value q8_1-sized unit
//            per (row, block): 8 ints) plus their scales, and the activation q8_1 blocks copied
//            (8 ints, d, and s or the exact integer sum of the quants), into shared memory;
//   barrier (1): every store of the slice is visible before anyone reads it;
//   compute: thread (warp w, lane l) owns weight rows tx + 16*jj (tx = l % 16, jj < 4) and
//            activation rows 8w + ty + 2*rr (ty = l / 16, rr < 4): a 4x4 register tile of
//            __dp4a integer dots, scaled per 32-value block as matmul_q8_1 does (the same
//            per-block formulas; see the Deviations of the contract for Q4_0/Q5_0/Q6_K);
//            a warp whose 8 activation rows all lie past m skips the work (not the barriers);
//   barrier (2): every read of the slice is done before the next slice's loads overwrite it.
// One buffer, two barriers per slice: no double buffering (44.8 KB of static shared memory).
// Each output is summed by one thread in K order, in two levels (the up to 8 block terms of a
// slice, then the slices), so a row's results do not depend on the other rows of the batch; they
// differ from matmul_q8_1's (lane-strided sums and a shuffle tree) by rounding only.
// Registers (NVRTC 12.9, ptxas -v): 96 for sm_80 and sm_90, no spills (2 blocks per SM).
// Rows past n or m are loaded as zeros and never written.

#define MMQT_N 64u                    // weight rows per tile
#define MMQT_M 64u                    // activation rows per tile
#define MMQT_KB 8u                    // q8_1 blocks per K-slice
#define MMQT_THREADS 256u
#define MMQT_QS (MMQT_KB * 8u + 1u)  // ints per tile row of quants (+1: rows start in other banks)
#define MMQT_SS (MMQT_KB + 1u)       // scale entries per tile row

// Unit g (a 32-value block, the values of q8_1 block g of the activations) of weight row wr as
// 8 ints of signed bytes v (values 4i..4i+3 in int i), and its scales:
//   Q4_0, Q5_0, Q8_0: v = q - c (c = 8, 16, 0), d = d_w;
//   Q4_1: v = q, d = d_w, mn = m_w;
//   Q4_K, Q5_K: v = q (0..31), d = super-block d, mn = dmin, sc = sub-block scale | min << 16;
//   Q6_K: v = q - 32, d = super-block d, sc = scale of values 0..15 (low 16 bits, signed) |
//         scale of values 16..31 << 16.
template <unsigned KIND>
__device__ FERRITE_INLINE void mmqt_decode(const unsigned char* wr, unsigned g, int* v, float* d, float* mn, int* sc) {
    *mn = 0.0f;
    *sc = 0;
    if constexpr (KIND == KIND_Q8_0) {
        const unsigned char* wb = wr + (unsigned long long)g * 34u;
        FERRITE_UNROLL
        for (unsigned i = 0; i < 8u; ++i) v[i] = ld_i32(wb + 2u + 4u * i);
        *d = ld_f16(wb);
    } else if constexpr (KIND < KIND_Q4_K) {
        constexpr unsigned bytes = KIND == KIND_Q4_0 ? 18u : KIND == KIND_Q4_1 ? 20u : 22u;
        constexpr unsigned qoff = KIND == KIND_Q4_0 ? 2u : KIND == KIND_Q4_1 ? 4u : 6u;
        const unsigned char* wb = wr + (unsigned long long)g * bytes;
        FERRITE_UNROLL
        for (unsigned i = 0; i < 4u; ++i) {
            const int x = ld_i32(wb + qoff + 4u * i);
            v[i] = NIB_LO(x);
            v[4u + i] = NIB_HI(x);
        }
        if constexpr (KIND == KIND_Q5_0) {
            const unsigned qh = (unsigned)ld_i32(wb + 2);
            FERRITE_UNROLL
            for (unsigned i = 0; i < 4u; ++i) {
                v[i] |= spread_bits4(qh >> (4u * i));
                v[4u + i] |= spread_bits4(qh >> (16u + 4u * i));
            }
        }
        if constexpr (KIND != KIND_Q4_1) {
            constexpr unsigned c = KIND == KIND_Q4_0 ? 8u : 16u;
            FERRITE_UNROLL
            for (unsigned i = 0; i < 8u; ++i) v[i] = sub_bytes(v[i], c);
        } else {
            *mn = ld_f16(wb + 2);
        }
        *d = ld_f16(wb);
    } else if constexpr (KIND == KIND_Q6_K) {
        // q8_1 block u = 4n + t of the super-block: values 128n + 32t .. +32 (as mmq_q6_k).
        const unsigned u = g % 8u, n = u / 4u, t = u % 4u;
        const unsigned char* wb = wr + (unsigned long long)(g / 8u) * 210u;
        const unsigned char* ql = wb + 64u * n + 32u * (t & 1u);
        const unsigned char* qh = wb + 128u + 32u * n;
        const unsigned qshift = 4u * (t >> 1), hshift = 2u * t;
        FERRITE_UNROLL
        for (unsigned c = 0; c < 8u; ++c) {
            const unsigned l4 = ((unsigned)ld_i32(ql + 4u * c) >> qshift) & 0x0F0F0F0Fu;
            const unsigned h2 = ((unsigned)ld_i32(qh + 4u * c) >> hshift) & 0x03030303u;
            v[c] = sub_bytes((int)(l4 | (h2 << 4)), 32u);
        }
        const int sc0 = (int)(signed char)wb[192u + 8u * n + 2u * t];
        const int sc1 = (int)(signed char)wb[192u + 8u * n + 2u * t + 1u];
        *sc = (int)(((unsigned)sc0 & 0xFFFFu) | ((unsigned)sc1 << 16));
        *d = ld_f16(wb + 208);
    } else {
        // Q4_K / Q5_K: sub-block s = g % 8 is nibble s & 1 of qs[32*(s/2) ..], Q5_K's fifth bit
        // is bit s of qh[l] (as mmq_q45_k).
        constexpr bool five = KIND == KIND_Q5_K;
        constexpr unsigned bytes = five ? 176u : 144u, qoff = five ? 48u : 16u;
        const unsigned s = g % 8u;
        const unsigned char* wb = wr + (unsigned long long)(g / 8u) * bytes;
        FERRITE_UNROLL
        for (unsigned t = 0; t < 8u; ++t) {
            int x = (int)(((unsigned)ld_i32(wb + qoff + 32u * (s / 2u) + 4u * t) >> (4u * (s & 1u))) & 0x0F0F0F0Fu);
            if constexpr (five) x |= (int)((((unsigned)ld_i32(wb + 16u + 4u * t) >> s) & 0x01010101u) << 4);
            v[t] = x;
        }
        unsigned scv, mnv;
        scale_min_k4(wb + 4, s, &scv, &mnv);
        *sc = (int)(scv | (mnv << 16));
        *d = ld_f16(wb);
        *mn = ld_f16(wb + 2);
    }
}

// dot[jj][rr] += the __dp4a dots of ints i0..i0+4 of block b, weight row wrow0 + 16*jj against
// activation row xrow0 + 2*rr (rows of the shared tiles).
__device__ FERRITE_INLINE void mmqt_dots(const int* wq, const int* xq, unsigned b, unsigned i0, unsigned wrow0,
                                         unsigned xrow0, int (*dot)[4]) {
    FERRITE_UNROLL
    for (unsigned i = i0; i < i0 + 4u; ++i) {
        int wv[4], xv[4];
        FERRITE_UNROLL
        for (unsigned jj = 0; jj < 4u; ++jj) wv[jj] = wq[(wrow0 + 16u * jj) * MMQT_QS + 8u * b + i];
        FERRITE_UNROLL
        for (unsigned rr = 0; rr < 4u; ++rr) xv[rr] = xq[(xrow0 + 2u * rr) * MMQT_QS + 8u * b + i];
        FERRITE_UNROLL
        for (unsigned jj = 0; jj < 4u; ++jj) {
            FERRITE_UNROLL
            for (unsigned rr = 0; rr < 4u; ++rr) dot[jj][rr] = __dp4a(wv[jj], xv[rr], dot[jj][rr]);
        }
    }
}

template <unsigned KIND>
__device__ FERRITE_INLINE void mmqt_run(const unsigned char* w, const unsigned char* xq, float* out, unsigned m,
                                        unsigned n, unsigned k, unsigned row_bytes, int* s_wq, float* s_wd,
                                        float* s_wm, int* s_wsc, int* s_xq, float* s_xd, int* s_xa) {
    const unsigned tid = threadIdx.x, warp = tid >> 5, lane = tid & 31u;
    const unsigned tx = lane & 15u, ty = lane >> 4;
    const unsigned j0 = blockIdx.x * MMQT_N, r0 = blockIdx.y * MMQT_M;
    const unsigned nt = min_u32(MMQT_N, n - j0), mt = min_u32(MMQT_M, m - r0);  // valid rows
    const unsigned xrow = (k / 32u) * Q8_1_BYTES;
    const unsigned nb = k / 32u;  // q8_1 blocks per row
    const unsigned xr0 = 8u * warp + ty;  // this thread's first activation row in the tile
    const bool active = 8u * warp < mt;    // warp-uniform
    float acc[4][4];
    FERRITE_UNROLL
    for (unsigned jj = 0; jj < 4u; ++jj) {
        FERRITE_UNROLL
        for (unsigned rr = 0; rr < 4u; ++rr) acc[jj][rr] = 0.0f;
    }
    for (unsigned kb0 = 0; kb0 < nb; kb0 += MMQT_KB) {
        const unsigned nbk = min_u32(MMQT_KB, nb - kb0);
        // ---- load (writes only shared memory this slice's compute reads after barrier 1) ----
        // Unit u: tile row u / 8, block u % 8; adjacent threads take adjacent blocks of a row.
        for (unsigned u = tid; u < MMQT_N * MMQT_KB; u += MMQT_THREADS) {
            const unsigned jr = u / MMQT_KB, b = u % MMQT_KB;
            int v[8];
            float d = 0.0f, mn = 0.0f;
            int sc = 0;
            if (jr < nt && b < nbk) {
                mmqt_decode<KIND>(w + (unsigned long long)(j0 + jr) * row_bytes, kb0 + b, v, &d, &mn, &sc);
            } else {
                FERRITE_UNROLL
                for (unsigned i = 0; i < 8u; ++i) v[i] = 0;
            }
            FERRITE_UNROLL
            for (unsigned i = 0; i < 8u; ++i) s_wq[jr * MMQT_QS + 8u * b + i] = v[i];
            s_wd[jr * MMQT_SS + b] = d;
            s_wm[jr * MMQT_SS + b] = mn;
            s_wsc[jr * MMQT_SS + b] = sc;
        }
        for (unsigned u = tid; u < MMQT_M * MMQT_KB; u += MMQT_THREADS) {
            const unsigned xr = u / MMQT_KB, b = u % MMQT_KB;
            int v[8];
            float d = 0.0f;
            int aux = 0;
            if (xr < mt && b < nbk) {
                const unsigned char* xb = xq + (unsigned long long)(r0 + xr) * xrow + (unsigned long long)(kb0 + b) * Q8_1_BYTES;
                int su = 0;
                FERRITE_UNROLL
                for (unsigned i = 0; i < 8u; ++i) {
                    v[i] = ld_x32(xb + 4u + 4u * i);
                    su = byte_sum(v[i], su);
                }
                d = ld_f16(xb);
                // Q4_1 takes s_x (f16, = d_x * sum(q)); the K-quants' mins the exact sum(q).
                aux = KIND == KIND_Q4_1 ? (int)f32_bits(ld_f16(xb + 2)) : su;
            } else {
                FERRITE_UNROLL
                for (unsigned i = 0; i < 8u; ++i) v[i] = 0;
            }
            FERRITE_UNROLL
            for (unsigned i = 0; i < 8u; ++i) s_xq[xr * MMQT_QS + 8u * b + i] = v[i];
            s_xd[xr * MMQT_SS + b] = d;
            s_xa[xr * MMQT_SS + b] = aux;
        }
        __syncthreads();  // (1) the slice is in shared memory
        // ---- compute (reads only) ----
        if (active) {
            // The slice's block terms are summed apart, then added to the running sums: two
            // levels (at most 8 terms, then k/256 slices) instead of one chain of k/32 terms.
            float part[4][4];
            FERRITE_UNROLL
            for (unsigned jj = 0; jj < 4u; ++jj) {
                FERRITE_UNROLL
                for (unsigned rr = 0; rr < 4u; ++rr) part[jj][rr] = 0.0f;
            }
            for (unsigned b = 0; b < nbk; ++b) {
                int sumi[4][4];
                FERRITE_UNROLL
                for (unsigned jj = 0; jj < 4u; ++jj) {
                    FERRITE_UNROLL
                    for (unsigned rr = 0; rr < 4u; ++rr) sumi[jj][rr] = 0;
                }
                if constexpr (KIND == KIND_Q6_K) {
                    // Two 16-value halves with their own scales: sumi = sc0*dot0 + sc1*dot1.
                    FERRITE_UNROLL
                    for (unsigned h = 0; h < 2u; ++h) {
                        int dot[4][4];
                        FERRITE_UNROLL
                        for (unsigned jj = 0; jj < 4u; ++jj) {
                            FERRITE_UNROLL
                            for (unsigned rr = 0; rr < 4u; ++rr) dot[jj][rr] = 0;
                        }
                        mmqt_dots(s_wq, s_xq, b, 4u * h, tx, xr0, dot);
                        FERRITE_UNROLL
                        for (unsigned jj = 0; jj < 4u; ++jj) {
                            const int scw = s_wsc[(tx + 16u * jj) * MMQT_SS + b];
                            const int sch = h == 0u ? (int)(short)(scw & 0xFFFF) : (scw >> 16);
                            FERRITE_UNROLL
                            for (unsigned rr = 0; rr < 4u; ++rr) sumi[jj][rr] += sch * dot[jj][rr];
                        }
                    }
                } else {
                    mmqt_dots(s_wq, s_xq, b, 0u, tx, xr0, sumi);
                    mmqt_dots(s_wq, s_xq, b, 4u, tx, xr0, sumi);
                }
                float xd[4];
                int xa[4];
                FERRITE_UNROLL
                for (unsigned rr = 0; rr < 4u; ++rr) {
                    xd[rr] = s_xd[(xr0 + 2u * rr) * MMQT_SS + b];
                    xa[rr] = s_xa[(xr0 + 2u * rr) * MMQT_SS + b];
                }
                FERRITE_UNROLL
                for (unsigned jj = 0; jj < 4u; ++jj) {
                    const unsigned jr = tx + 16u * jj;
                    const float dw = s_wd[jr * MMQT_SS + b];
                    const float mw = s_wm[jr * MMQT_SS + b];
                    const int scw = s_wsc[jr * MMQT_SS + b];
                    FERRITE_UNROLL
                    for (unsigned rr = 0; rr < 4u; ++rr) {
                        // The per-block terms of matmul_q8_1 (mmq_legacy, mmq_q45_k, mmq_q6_k).
                        if constexpr (KIND == KIND_Q4_1) {
                            part[jj][rr] += dw * xd[rr] * (float)sumi[jj][rr] + mw * bits_f32((unsigned)xa[rr]);
                        } else if constexpr (KIND == KIND_Q4_K || KIND == KIND_Q5_K) {
                            const int sc = scw & 0xFFFF, mn = scw >> 16;
                            part[jj][rr] += dw * (xd[rr] * (float)(sc * sumi[jj][rr])) - mw * (xd[rr] * (float)(mn * xa[rr]));
                        } else {
                            part[jj][rr] += dw * (xd[rr] * (float)sumi[jj][rr]);
                        }
                    }
                }
            }
            FERRITE_UNROLL
            for (unsigned jj = 0; jj < 4u; ++jj) {
                FERRITE_UNROLL
                for (unsigned rr = 0; rr < 4u; ++rr) acc[jj][rr] += part[jj][rr];
            }
        }
        __syncthreads();  // (2) the slice has been read: the next loads may overwrite it
    }
    FERRITE_UNROLL
    for (unsigned jj = 0; jj < 4u; ++jj) {
        FERRITE_UNROLL
        for (unsigned rr = 0; rr < 4u; ++rr) {
            const unsigned jr = tx + 16u * jj, xr = xr0 + 2u * rr;
            if (jr < nt && xr < mt) out[(unsigned long long)(r0 + xr) * n + j0 + jr] = acc[jj][rr];
        }
    }
}

extern "C" __global__ void matmul_q8_1_tiled(const unsigned char* w, const unsigned char* xq, float* out,
                                             unsigned m, unsigned n, unsigned k, unsigned row_bytes,
                                             unsigned kind) {
    __shared__ int s_wq[MMQT_N * MMQT_QS];
    __shared__ float s_wd[MMQT_N * MMQT_SS];
    __shared__ float s_wm[MMQT_N * MMQT_SS];
    __shared__ int s_wsc[MMQT_N * MMQT_SS];
    __shared__ int s_xq[MMQT_M * MMQT_QS];
    __shared__ float s_xd[MMQT_M * MMQT_SS];
    __shared__ int s_xa[MMQT_M * MMQT_SS];
    switch (kind) {
        case KIND_Q4_0:
            mmqt_run<KIND_Q4_0>(w, xq, out, m, n, k, row_bytes, s_wq, s_wd, s_wm, s_wsc, s_xq, s_xd, s_xa);
            break;
        case KIND_Q4_1:
            mmqt_run<KIND_Q4_1>(w, xq, out, m, n, k, row_bytes, s_wq, s_wd, s_wm, s_wsc, s_xq, s_xd, s_xa);
            break;
        case KIND_Q5_0:
            mmqt_run<KIND_Q5_0>(w, xq, out, m, n, k, row_bytes, s_wq, s_wd, s_wm, s_wsc, s_xq, s_xd, s_xa);
            break;
        case KIND_Q8_0:
            mmqt_run<KIND_Q8_0>(w, xq, out, m, n, k, row_bytes, s_wq, s_wd, s_wm, s_wsc, s_xq, s_xd, s_xa);
            break;
        case KIND_Q4_K:
            mmqt_run<KIND_Q4_K>(w, xq, out, m, n, k, row_bytes, s_wq, s_wd, s_wm, s_wsc, s_xq, s_xd, s_xa);
            break;
        case KIND_Q5_K:
            mmqt_run<KIND_Q5_K>(w, xq, out, m, n, k, row_bytes, s_wq, s_wd, s_wm, s_wsc, s_xq, s_xd, s_xa);
            break;
        default:
            mmqt_run<KIND_Q6_K>(w, xq, out, m, n, k, row_bytes, s_wq, s_wd, s_wm, s_wsc, s_xq, s_xd, s_xa);
            break;
    }
}
