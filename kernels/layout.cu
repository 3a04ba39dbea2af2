// layout.cu: the strided block copy behind concat and narrow of f32 tensors. A tensor split at
// an axis is `outer` blocks of contiguous values; `copy_blocks_f32` copies `total / len` blocks
// of `len` values, block o read at src + o*src_stride and written at dst + o*dst_stride (both
// pointers already at the first block). Launch: block 256, grid.x = min(ceil(total/256), 65535),
// a grid-stride loop over the elements (64-bit index).

extern "C" __global__ void copy_blocks_f32(const float* src, float* dst, unsigned total, unsigned len,
                                           unsigned src_stride, unsigned dst_stride) {
    for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
         i < (unsigned long long)total; i += (unsigned long long)gridDim.x * blockDim.x) {
        const unsigned long long o = i / len, e = i % len;
        dst[o * dst_stride + e] = src[o * src_stride + e];
    }
}
