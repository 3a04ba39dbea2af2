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
