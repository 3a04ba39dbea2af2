// resample.cu: nearest-neighbour upsampling of NHWC images by an integer factor:
// x [n, h, w, c] (f32) to out [n, h*factor, w*factor, c], each input pixel repeated
// factor x factor times. Launch: block 256, grid.x = min(ceil(total/256), 65535), a grid-stride
// loop over the output elements (64-bit index); consecutive threads write consecutive channels.

extern "C" __global__ void upsample_nearest_f32(const float* x, float* out, unsigned total, unsigned h, unsigned w,
                                                unsigned c, unsigned factor) {
    const unsigned long long wo = (unsigned long long)w * factor, ho = (unsigned long long)h * factor;
    for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
         i < (unsigned long long)total; i += (unsigned long long)gridDim.x * blockDim.x) {
        const unsigned long long ch = i % c, px = i / c;
        const unsigned long long ox = px % wo, oy = (px / wo) % ho, b = px / (wo * ho);
        out[i] = x[((b * h + oy / factor) * w + ox / factor) * c + ch];
    }
}
