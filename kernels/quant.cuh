// quant.cuh: GGUF (ggml) block formats: sizes, kind codes and the scalar decoder dequant_value,
// shared by gather.cu (embeddings) and matmul_quant.cu (which also has its own dp4a paths).
//
// Block layouts (little endian, f16 scales), byte offsets in brackets:
//   Q4_0 18 B / 32: d[0] qs[2..18]            value l (l<16) = low nibble of qs[l], l+16 = high
//   Q4_1 20 B / 32: d[0] m[2] qs[4..20]       same nibbles, d*q + m
//   Q5_0 22 B / 32: d[0] qh[2..6] qs[6..22]   bit 4 of value j is bit j of the u32 qh
//   Q8_0 34 B / 32: d[0] qs[2..34] (i8)
//   Q4_K 144 B / 256: d[0] dmin[2] scales[4..16] qs[16..144]
//   Q5_K 176 B / 256: d[0] dmin[2] scales[4..16] qh[16..48] qs[48..176]
//   Q6_K 210 B / 256: ql[0..128] qh[128..192] scales[192..208] (i8) d[208]
// Products are rounded on their own (fmul_rn) so the values equal the CPU backend's
// (crates/ferrite-tensor/src/quant/dequant.rs, the gguf package's numpy arithmetic) bit for bit.

#define QK_LEGACY 32u
#define QK_K 256u
#define Q8_1_BYTES 36u  // block_q8_1: f16 d, f16 s, i8 qs[32]

#define KIND_Q4_0 0u
#define KIND_Q4_1 1u
#define KIND_Q5_0 2u
#define KIND_Q8_0 3u
#define KIND_Q4_K 4u
#define KIND_Q5_K 5u
#define KIND_Q6_K 6u

// Bytes per block and values per block of a quant kind.
__device__ FERRITE_INLINE unsigned quant_block_bytes(unsigned kind) {
    switch (kind) {
        case KIND_Q4_0: return 18u;
        case KIND_Q4_1: return 20u;
        case KIND_Q5_0: return 22u;
        case KIND_Q8_0: return 34u;
        case KIND_Q4_K: return 144u;
        case KIND_Q5_K: return 176u;
        default: return 210u;
    }
}

__device__ FERRITE_INLINE unsigned quant_block_values(unsigned kind) { return kind >= KIND_Q4_K ? QK_K : QK_LEGACY; }

// ggml's get_scale_min_k4: the 6-bit scale (*sc) and min (*mn) of sub-block j (0..8) packed in
// the 12 scale bytes s of a Q4_K / Q5_K block.
__device__ FERRITE_INLINE void scale_min_k4(const unsigned char* s, unsigned j, unsigned* sc, unsigned* mn) {
    if (j < 4u) {
        *sc = s[j] & 63u;
        *mn = s[j + 4u] & 63u;
    } else {
        *sc = (s[j + 4u] & 0xFu) | ((s[j - 4u] >> 6) << 4);
        *mn = (s[j + 4u] >> 4) | ((s[j] >> 6) << 4);
    }
}

// Value j of a quantized row starting at `row`, exactly ggml's dequantize_row_* value.
__device__ FERRITE_INLINE float dequant_value(const unsigned char* row, unsigned j, unsigned kind) {
    if (kind < KIND_Q4_K) {
        const unsigned char* b = row + (j / 32u) * quant_block_bytes(kind);
        unsigned l = j % 32u;
        unsigned lo = l & 15u, hi = l >> 4;  // byte index within qs, which nibble
        float d = ld_f16(b);
        switch (kind) {
            case KIND_Q4_0: {
                int q = (int)((b[2u + lo] >> (4u * hi)) & 0xFu);
                return d * (float)(q - 8);
            }
            case KIND_Q4_1: {
                unsigned q = (b[4u + lo] >> (4u * hi)) & 0xFu;
                return fmul_rn(d, (float)q) + ld_f16(b + 2);
            }
            case KIND_Q5_0: {
                unsigned qh = (unsigned)ld_i32(b + 2);
                unsigned q = ((b[6u + lo] >> (4u * hi)) & 0xFu) | (((qh >> l) & 1u) << 4);
                return d * (float)((int)q - 16);
            }
            default: {  // Q8_0
                return (float)(signed char)b[2u + l] * d;
            }
        }
    }
    const unsigned char* b = row + (j / QK_K) * quant_block_bytes(kind);
    unsigned e = j % QK_K;
    if (kind == KIND_Q6_K) {
        // half n = e/128; within it t = (e%128)/32 and l = e%32: ql byte 64n + l (+32 when t is
        // odd), low nibble for t < 2; bits 2t..2t+2 of qh[32n + l]; scale (e/16) signed.
        unsigned n = e / 128u, t = (e % 128u) / 32u, l = e % 32u;
        unsigned ql = b[64u * n + l + 32u * (t & 1u)];
        unsigned qh = b[128u + 32u * n + l];
        int q = (int)(((ql >> (4u * (t >> 1))) & 0xFu) | (((qh >> (2u * t)) & 3u) << 4));
        float dl = fmul_rn(ld_f16(b + 208), (float)(signed char)b[192u + e / 16u]);
        return dl * (float)(q - 32);
    }
    // Q4_K / Q5_K: 64-value group i = e/64; sub-block 2i is the low nibbles of qs[32i..32i+32],
    // 2i+1 the high ones; Q5_K's fifth bit of sub-block s, position l is bit s of qh[l].
    unsigned i = e / 64u, l = e % 32u, s = e / 32u;
    unsigned sc, mn;
    scale_min_k4(b + 4, s, &sc, &mn);
    float dl = fmul_rn(ld_f16(b), (float)sc);
    float ml = fmul_rn(ld_f16(b + 2), (float)mn);
    unsigned q;
    if (kind == KIND_Q4_K) {
        q = (b[16u + 32u * i + l] >> (4u * (s & 1u))) & 0xFu;
    } else {
        q = ((b[48u + 32u * i + l] >> (4u * (s & 1u))) & 0xFu) | (((b[16u + l] >> s) & 1u) << 4);
    }
    return fmul_rn(dl, (float)q) - ml;
}
