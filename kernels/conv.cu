// conv.cu: 2-D convolution of NHWC images, x [n, h, w, c_in] (f32) with w [c_out, kh, kw, c_in]
// (float dtype code 0 f32, 1 f16, 2 bf16) plus an optional bias [c_out] (f32), giving
// out [n, h_out, w_out, c_out] (f32). Zero padding `pad` and one `stride` on both axes.
//
// An implicit GEMM (no im2col buffer): output pixels are the rows, output channels the columns
// and K = kh*kw*c_in the patch index, in the weight's row order (ky, kx, ci).
// Launch: block 256, grid = (ceil(pixels / 64), ceil(c_out / 64)), pixels = n*h_out*w_out.
// A block computes a 64-pixel x 64-channel tile; thread (tx, ty) = (tid % 16, tid / 16) owns
// pixels ty + 16i and channels tx + 16j (i, j < 4), so the tile's writes are coalesced along
// the channels. K is walked in steps of 16 through shared memory: per step every thread stages
// 4 patch values (zero outside the image) and 4 weights; it always stages the same k offset
// (tid % 16) of 4 fixed pixels / channels, whose coordinates it works out once.

#define CONV_TM 64u
#define CONV_TN 64u
#define CONV_TK 16u

extern "C" __global__ void conv2d_f32(const float* x, const void* w, const float* bias, float* out,
                                      unsigned pixels, unsigned h, unsigned wd, unsigned c_in, unsigned c_out,
                                      unsigned kh, unsigned kw, unsigned h_out, unsigned w_out, unsigned stride,
                                      unsigned pad, unsigned w_code, unsigned has_bias) {
    // Padded rows: the staging writes (k fastest) spread over the banks.
    __shared__ float xs[CONV_TK][CONV_TM + 1u];
    __shared__ float ws[CONV_TK][CONV_TN + 1u];
    const unsigned tid = threadIdx.x, tx = tid & 15u, ty = tid >> 4;
    const unsigned m0 = blockIdx.x * CONV_TM, n0 = blockIdx.y * CONV_TN;
    const unsigned kdim = kh * kw * c_in;
    const unsigned long long w_bytes = w_code == 0u ? 4ull : 2ull;

    // The 4 pixels this thread stages: image index, top-left input row / column of the patch.
    int iy0[4], ix0[4];
    unsigned long long img[4];  // element offset of the pixel's image
    bool pix_ok[4];
    FERRITE_UNROLL
    for (unsigned r = 0; r < 4u; ++r) {
        const unsigned m = m0 + ty + 16u * r;
        pix_ok[r] = m < pixels;
        const unsigned mm = pix_ok[r] ? m : 0u;
        const unsigned ox = mm % w_out, oy = (mm / w_out) % h_out, b = mm / (w_out * h_out);
        iy0[r] = (int)(oy * stride) - (int)pad;
        ix0[r] = (int)(ox * stride) - (int)pad;
        img[r] = (unsigned long long)b * h * wd * c_in;
    }

    float acc[4][4];
    FERRITE_UNROLL
    for (unsigned i = 0; i < 4u; ++i) {
        FERRITE_UNROLL
        for (unsigned j = 0; j < 4u; ++j) acc[i][j] = 0.0f;
    }

    for (unsigned k0 = 0; k0 < kdim; k0 += CONV_TK) {
        const unsigned k = k0 + tx;
        const bool k_ok = k < kdim;
        const unsigned ci = k_ok ? k % c_in : 0u;
        const unsigned kx = k_ok ? (k / c_in) % kw : 0u;
        const unsigned ky = k_ok ? k / (c_in * kw) : 0u;
        FERRITE_UNROLL
        for (unsigned r = 0; r < 4u; ++r) {
            const int iy = iy0[r] + (int)ky, ix = ix0[r] + (int)kx;
            float v = 0.0f;
            if (k_ok && pix_ok[r] && iy >= 0 && ix >= 0 && iy < (int)h && ix < (int)wd) {
                v = x[img[r] + ((unsigned long long)iy * wd + (unsigned)ix) * c_in + ci];
            }
            xs[tx][ty + 16u * r] = v;
            const unsigned n = n0 + ty + 16u * r;
            float wv = 0.0f;
            if (k_ok && n < c_out) {
                const unsigned long long e = (unsigned long long)n * kdim + k;
                wv = load_float((const unsigned char*)w + e * w_bytes, 0u, w_code);
            }
            ws[tx][ty + 16u * r] = wv;
        }
        __syncthreads();
        FERRITE_UNROLL
        for (unsigned kk = 0; kk < CONV_TK; ++kk) {
            float a[4], bw[4];
            FERRITE_UNROLL
            for (unsigned i = 0; i < 4u; ++i) a[i] = xs[kk][ty + 16u * i];
            FERRITE_UNROLL
            for (unsigned j = 0; j < 4u; ++j) bw[j] = ws[kk][tx + 16u * j];
            FERRITE_UNROLL
            for (unsigned i = 0; i < 4u; ++i) {
                FERRITE_UNROLL
                for (unsigned j = 0; j < 4u; ++j) acc[i][j] += a[i] * bw[j];
            }
        }
        __syncthreads();
    }

    FERRITE_UNROLL
    for (unsigned i = 0; i < 4u; ++i) {
        const unsigned m = m0 + ty + 16u * i;
        if (m >= pixels) continue;
        FERRITE_UNROLL
        for (unsigned j = 0; j < 4u; ++j) {
            const unsigned n = n0 + tx + 16u * j;
            if (n < c_out) out[(unsigned long long)m * c_out + n] = has_bias ? acc[i][j] + bias[n] : acc[i][j];
        }
    }
}

#undef CONV_TM
#undef CONV_TN
#undef CONV_TK
