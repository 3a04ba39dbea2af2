// quantize.cu: f32 activations -> llama.cpp block_q8_1 rows, the input of matmul_q8_1.
// Launch: grid = (k/32, rows), block 32: one warp per 32-value block, lane l quantizes value l.
// Output block (36 bytes): f16 d = amax/127, f16 s = d * sum(qs) (d unrounded, then s rounded
// to f16), i8 qs[32] = roundf(x/d) (0 when the block is all zero). Row r starts at
// out + r*(k/32)*36. Fields are written bytewise, so `out` needs no alignment.

extern "C" __global__ void quantize_q8_1(const float* x, unsigned char* out, unsigned k) {
    const unsigned lane = threadIdx.x & 31u;
    const unsigned long long blk = (unsigned long long)blockIdx.y * (k / 32u) + blockIdx.x;
    const float v = x[blk * 32u + lane];
    const float amax = warp_max(fabsf(v));
    const float d = amax / 127.0f;
    const int q = amax == 0.0f ? 0 : (int)roundf(v / d);
    // The sum of 32 integers of magnitude <= 127 is exact in f32.
    const float sum = warp_sum((float)q);
    unsigned char* b = out + blk * Q8_1_BYTES;
    b[4u + lane] = (unsigned char)(signed char)q;
    if (lane == 0u) {
        const unsigned short hd = f32_to_f16(d), hs = f32_to_f16(d * sum);
        b[0] = (unsigned char)(hd & 0xffu);
        b[1] = (unsigned char)(hd >> 8);
        b[2] = (unsigned char)(hs & 0xffu);
        b[3] = (unsigned char)(hs >> 8);
    }
}
