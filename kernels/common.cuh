// common.cuh: helpers every kernel file gets. The host compiles each kernels/NAME.cu as the one
// string common.cuh + quant.cuh + NAME.cu (NVRTC, no headers: nothing here may #include), and the
// emulator compiles the same string as host C++20 with -DFERRITE_EMU after kernels/emu/cuda_emu.h.
// Everything that only NVRTC understands (inline PTX, __fmul_rn, ...) sits in #ifndef FERRITE_EMU
// with a portable #else branch.
//
// Contents: half/bfloat16 conversions, exact-rounding float helpers, unaligned little-endian
// loads, warp and block reductions, load_float (float dtype codes 0 f32, 1 f16, 2 bf16).

#ifndef FERRITE_EMU
#define FERRITE_DYN_SMEM(T, name) extern __shared__ T name[]
#define FERRITE_INLINE __forceinline__
#define FERRITE_UNROLL _Pragma("unroll")
#else
#define FERRITE_INLINE inline
#define FERRITE_UNROLL
#endif

// ---- bit casts and exactly rounded arithmetic -------------------------------------------------

__device__ FERRITE_INLINE unsigned int f32_bits(float f) {
#ifndef FERRITE_EMU
    return __float_as_uint(f);
#else
    return __builtin_bit_cast(unsigned int, f);
#endif
}

__device__ FERRITE_INLINE float bits_f32(unsigned int u) {
#ifndef FERRITE_EMU
    return __uint_as_float(u);
#else
    return __builtin_bit_cast(float, u);
#endif
}

// a * b rounded on its own: NVRTC contracts `a * b + c` into one fma by default, which changes
// the rounding; the CPU reference (and ggml's dequantizers) round the product first.
__device__ FERRITE_INLINE float fmul_rn(float a, float b) {
#ifndef FERRITE_EMU
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}

// a * b + c with one rounding (the CPU backend's `mul_add`).
__device__ FERRITE_INLINE float fma_rn(float a, float b, float c) {
#ifndef FERRITE_EMU
    return __fmaf_rn(a, b, c);
#else
    return __builtin_fmaf(a, b, c);
#endif
}

__device__ FERRITE_INLINE float neg_inf() { return bits_f32(0xff800000u); }

__device__ FERRITE_INLINE unsigned int min_u32(unsigned int a, unsigned int b) { return a < b ? a : b; }

// ---- f16 / bf16 <-> f32 -------------------------------------------------------------------------

__device__ FERRITE_INLINE float f16_to_f32(unsigned short h) {
#ifndef FERRITE_EMU
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
#else
    unsigned int sign = ((unsigned int)h & 0x8000u) << 16;
    unsigned int exp = ((unsigned int)h >> 10) & 0x1fu;
    unsigned int man = (unsigned int)h & 0x3ffu;
    if (exp == 0x1fu) return bits_f32(sign | 0x7f800000u | (man << 13));  // inf / nan
    if (exp == 0u) {
        // zero or subnormal: man * 2^-24, exact in f32
        float v = (float)man * bits_f32(0x33800000u);
        return bits_f32(sign | f32_bits(v));
    }
    return bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
#endif
}

// Round to nearest even; overflow to inf, subnormal results rounded right, NaN stays NaN.
__device__ FERRITE_INLINE unsigned short f32_to_f16(float f) {
#ifndef FERRITE_EMU
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
#else
    unsigned int x = f32_bits(f);
    unsigned int sign = (x >> 16) & 0x8000u;
    unsigned int ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return (unsigned short)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));  // nan
    if (ax >= 0x477ff000u) return (unsigned short)(sign | 0x7c00u);  // >= 65520: inf
    if (ax < 0x38800000u) {
        // below the smallest normal f16 (2^-14): a subnormal, value = round(|f| * 2^24) * 2^-24.
        if (ax < 0x33000000u) return (unsigned short)sign;  // <= 2^-25 rounds to 0 (tie to even)
        unsigned int e = ax >> 23;                       // 102..112
        unsigned int m = (ax & 0x7fffffu) | 0x800000u;   // 24-bit significand
        unsigned int shift = 126u - e;                   // 14..24
        unsigned int q = m >> shift;
        unsigned int rem = m & ((1u << shift) - 1u);
        unsigned int half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (q & 1u))) q += 1u;
        return (unsigned short)(sign | q);
    }
    // normal: rebias the exponent, round the 13 dropped bits to nearest even (a carry into
    // the exponent is the right result, up to inf).
    unsigned int r = ax - 0x38000000u;
    unsigned int q = r >> 13;
    unsigned int rem = r & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (q & 1u))) q += 1u;
    return (unsigned short)(sign | q);
#endif
}

__device__ FERRITE_INLINE float bf16_to_f32(unsigned short h) { return bits_f32((unsigned int)h << 16); }

// Round to nearest even; NaN stays NaN (quiet bit set so truncation cannot make it inf).
__device__ FERRITE_INLINE unsigned short f32_to_bf16(float f) {
    unsigned int x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((x >> 16) | 0x40u);
    x += 0x7fffu + ((x >> 16) & 1u);
    return (unsigned short)(x >> 16);
}

// Element i of a float array of dtype code 0 f32, 1 f16, 2 bf16 (p aligned to its element size).
__device__ FERRITE_INLINE float load_float(const void* p, unsigned i, unsigned code) {
    if (code == 0u) return ((const float*)p)[i];
    unsigned short h = ((const unsigned short*)p)[i];
    return code == 1u ? f16_to_f32(h) : bf16_to_f32(h);
}

// ---- little-endian loads at any byte address (GGUF blocks are 18, 20, 22, 34, 210 bytes) ----

__device__ FERRITE_INLINE unsigned int ld_u16(const unsigned char* p) {
    return (unsigned int)p[0] | ((unsigned int)p[1] << 8);
}

// The 4 bytes at p as one little-endian word: one 32-bit load when p is 4-aligned, two 16-bit
// loads when 2-aligned (the common case for quant blocks), bytes otherwise.
__device__ FERRITE_INLINE int ld_i32(const unsigned char* p) {
#ifndef FERRITE_EMU
    unsigned long long a = (unsigned long long)p;
    if ((a & 3ull) == 0ull) return *(const int*)p;
    if ((a & 1ull) == 0ull) {
        const unsigned short* h = (const unsigned short*)p;
        return (int)((unsigned int)h[0] | ((unsigned int)h[1] << 16));
    }
#endif
    return (int)((unsigned int)p[0] | ((unsigned int)p[1] << 8) | ((unsigned int)p[2] << 16) |
                 ((unsigned int)p[3] << 24));
}

__device__ FERRITE_INLINE float ld_f16(const unsigned char* p) { return f16_to_f32((unsigned short)ld_u16(p)); }

// ---- reductions ---------------------------------------------------------------------------------

__device__ FERRITE_INLINE float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ FERRITE_INLINE float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over a 1-D block (blockDim.x a multiple of 32, <= 1024), returned to every thread.
// scratch32 is a __shared__ float[32]. The leading barrier lets calls reuse the same scratch
// back to back (nobody is still reading the previous result from it).
__device__ FERRITE_INLINE float block_sum(float v, float* scratch32) {
    unsigned lane = threadIdx.x & 31u, warp = threadIdx.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0u) scratch32[warp] = v;
    __syncthreads();
    float r = lane < (blockDim.x >> 5) ? scratch32[lane] : 0.0f;
    return warp_sum(r);
}

__device__ FERRITE_INLINE float block_max(float v, float* scratch32) {
    unsigned lane = threadIdx.x & 31u, warp = threadIdx.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0u) scratch32[warp] = v;
    __syncthreads();
    float r = lane < (blockDim.x >> 5) ? scratch32[lane] : neg_inf();
    return warp_max(r);
}

// One chunk of an online softmax: thread i of the block owns score sc[i] (i < count, blockDim.x
// >= count). Turns the chunk's scores into exp(s - new max) in place, folds them into the running
// max `m` and sum `l`, and returns the factor by which outputs accumulated over earlier chunks
// must be rescaled. Every thread of the block must call it (it holds barriers; block_sum's also
// publish the new sc).
__device__ FERRITE_INLINE float online_softmax_chunk(float* sc, unsigned count, float& m, float& l, float* red) {
    const unsigned tid = threadIdx.x;
    const float s = tid < count ? sc[tid] : neg_inf();
    const float m_new = fmaxf(m, block_max(s, red));
    // exp(-inf) would be 0 anyway; guard the -inf - -inf = NaN case of an all -inf chunk.
    const float pr = (tid < count && s != neg_inf()) ? expf(s - m_new) : 0.0f;
    if (tid < count) sc[tid] = pr;
    const float corr = m == neg_inf() ? 0.0f : expf(m - m_new);
    l = l * corr + block_sum(pr, red);
    m = m_new;
    return corr;
}
