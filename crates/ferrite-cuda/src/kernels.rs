//! The CUDA C sources of `kernels/` and the kernels each defines.
//!
//! A file is compiled as one source: `common.cuh`, then `quant.cuh`, then the file itself (no
//! `#include`s: NVRTC runs without the toolkit's headers). See `kernels/README.md`.

/// One `kernels/NAME.cu` file.
#[derive(Debug, PartialEq, Eq)]
pub struct KernelFile {
    pub name: &'static str,
    pub body: &'static str,
}

/// An `extern "C" __global__` kernel and the file that defines it.
#[derive(Debug, PartialEq, Eq)]
pub struct Kernel {
    pub name: &'static str,
    pub file: &'static KernelFile,
}

macro_rules! kernel_file {
    ($name:literal) => {
        KernelFile {
            name: $name,
            body: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../kernels/", $name, ".cu")),
        }
    };
}

/// Headers every file is compiled with, in order.
pub const PRELUDE: [&str; 2] = [
    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../kernels/common.cuh")),
    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../kernels/quant.cuh")),
];

pub static ELEMENTWISE: KernelFile = kernel_file!("elementwise");
pub static NORM: KernelFile = kernel_file!("norm");
pub static ROPE: KernelFile = kernel_file!("rope");
pub static GATHER: KernelFile = kernel_file!("gather");
pub static ATTENTION: KernelFile = kernel_file!("attention");
pub static QUANTIZE: KernelFile = kernel_file!("quantize");
pub static MATMUL_QUANT: KernelFile = kernel_file!("matmul_quant");
pub static MATMUL_FLOAT: KernelFile = kernel_file!("matmul_float");
pub static ARGMAX: KernelFile = kernel_file!("argmax");
pub static CONV: KernelFile = kernel_file!("conv");
pub static GROUP_NORM: KernelFile = kernel_file!("group_norm");
pub static RESAMPLE: KernelFile = kernel_file!("resample");
pub static LAYOUT: KernelFile = kernel_file!("layout");
pub static MODULATE: KernelFile = kernel_file!("modulate");
pub static ROTARY: KernelFile = kernel_file!("rotary");
pub static ATTENTION_DENSE: KernelFile = kernel_file!("attention_dense");

/// Every kernel file.
pub static FILES: [&KernelFile; 16] = [
    &ELEMENTWISE,
    &NORM,
    &ROPE,
    &GATHER,
    &ATTENTION,
    &QUANTIZE,
    &MATMUL_QUANT,
    &MATMUL_FLOAT,
    &ARGMAX,
    &CONV,
    &GROUP_NORM,
    &RESAMPLE,
    &LAYOUT,
    &MODULATE,
    &ROTARY,
    &ATTENTION_DENSE,
];

pub static ADD: Kernel = Kernel { name: "add_f32", file: &ELEMENTWISE };
pub static MUL: Kernel = Kernel { name: "mul_f32", file: &ELEMENTWISE };
pub static SCALE: Kernel = Kernel { name: "scale_f32", file: &ELEMENTWISE };
pub static ACTIVATION: Kernel = Kernel { name: "activation_f32", file: &ELEMENTWISE };
pub static GATED: Kernel = Kernel { name: "gated_f32", file: &ELEMENTWISE };
pub static CAST: Kernel = Kernel { name: "cast_float", file: &ELEMENTWISE };
pub static RMS_NORM: Kernel = Kernel { name: "rms_norm_f32", file: &NORM };
pub static LAYER_NORM: Kernel = Kernel { name: "layer_norm_f32", file: &NORM };
pub static SOFTMAX: Kernel = Kernel { name: "softmax_f32", file: &NORM };
pub static ROPE_F32: Kernel = Kernel { name: "rope_f32", file: &ROPE };
pub static EMBEDDING: Kernel = Kernel { name: "embedding", file: &GATHER };
pub static WRITE_KV: Kernel = Kernel { name: "write_kv", file: &GATHER };
pub static ATTENTION_PAGED: Kernel = Kernel { name: "attention_paged", file: &ATTENTION };
pub static QUANTIZE_Q8_1: Kernel = Kernel { name: "quantize_q8_1", file: &QUANTIZE };
pub static MATMUL_Q8_1: Kernel = Kernel { name: "matmul_q8_1", file: &MATMUL_QUANT };
pub static MATMUL_FLOAT_K: Kernel = Kernel { name: "matmul_float", file: &MATMUL_FLOAT };
pub static ARGMAX_F32: Kernel = Kernel { name: "argmax_f32", file: &ARGMAX };
pub static CONV2D: Kernel = Kernel { name: "conv2d_f32", file: &CONV };
pub static GROUP_NORM_PARTIAL: Kernel = Kernel { name: "group_norm_partial", file: &GROUP_NORM };
pub static GROUP_NORM_MERGE: Kernel = Kernel { name: "group_norm_merge", file: &GROUP_NORM };
pub static GROUP_NORM_APPLY: Kernel = Kernel { name: "group_norm_apply", file: &GROUP_NORM };
pub static UPSAMPLE_NEAREST: Kernel = Kernel { name: "upsample_nearest_f32", file: &RESAMPLE };
pub static COPY_BLOCKS: Kernel = Kernel { name: "copy_blocks_f32", file: &LAYOUT };
pub static MODULATE_F32: Kernel = Kernel { name: "modulate_f32", file: &MODULATE };
pub static GATED_ADD: Kernel = Kernel { name: "gated_add_f32", file: &MODULATE };
pub static ROTARY_F32: Kernel = Kernel { name: "rotary_f32", file: &ROTARY };
pub static ATTENTION_DENSE_K: Kernel = Kernel { name: "attention_dense", file: &ATTENTION_DENSE };
pub static MATMUL_Q8_1_TILED: Kernel = Kernel { name: "matmul_q8_1_tiled", file: &MATMUL_QUANT };
pub static ATTENTION_PAGED_SPLIT: Kernel = Kernel { name: "attention_paged_split", file: &ATTENTION };
pub static ATTENTION_PAGED_MERGE: Kernel = Kernel { name: "attention_paged_merge", file: &ATTENTION };
pub static ATTENTION_PAGED_TILED: Kernel = Kernel { name: "attention_paged_tiled", file: &ATTENTION };

/// Every kernel the backend launches.
pub static ALL: [&Kernel; 31] = [
    &ADD,
    &MUL,
    &SCALE,
    &ACTIVATION,
    &GATED,
    &CAST,
    &RMS_NORM,
    &LAYER_NORM,
    &SOFTMAX,
    &ROPE_F32,
    &EMBEDDING,
    &WRITE_KV,
    &ATTENTION_PAGED,
    &QUANTIZE_Q8_1,
    &MATMUL_Q8_1,
    &MATMUL_FLOAT_K,
    &ARGMAX_F32,
    &CONV2D,
    &GROUP_NORM_PARTIAL,
    &GROUP_NORM_MERGE,
    &GROUP_NORM_APPLY,
    &UPSAMPLE_NEAREST,
    &COPY_BLOCKS,
    &MODULATE_F32,
    &GATED_ADD,
    &ROTARY_F32,
    &ATTENTION_DENSE_K,
    &MATMUL_Q8_1_TILED,
    &ATTENTION_PAGED_SPLIT,
    &ATTENTION_PAGED_MERGE,
    &ATTENTION_PAGED_TILED,
];

/// The whole source NVRTC compiles for `file`.
pub fn source(file: &KernelFile) -> String {
    let mut s = String::with_capacity(PRELUDE.iter().map(|p| p.len()).sum::<usize>() + file.body.len() + 64);
    for p in PRELUDE {
        s.push_str(p);
        s.push('\n');
    }
    s.push_str(file.body);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kernel_is_defined_in_its_file_and_registered_for_the_emulator() {
        let registry = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../kernels/emu/registry.inc"));
        for k in ALL {
            let decl = format!("void {}(", k.name);
            assert!(k.file.body.contains(&decl), "{} is not defined in kernels/{}.cu", k.name, k.file.name);
            assert!(registry.contains(&format!("FERRITE_KERNEL({})", k.name)), "{} missing from registry.inc", k.name);
        }
        for f in FILES {
            assert!(!f.body.contains("#include"), "kernels/{}.cu includes a header", f.name);
            assert!(ALL.iter().any(|k| std::ptr::eq(k.file, f)), "no kernel of kernels/{}.cu is used", f.name);
        }
    }
}
