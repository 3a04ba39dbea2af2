//! Which instruction set the kernels use, detected once per process.

use std::sync::OnceLock;

/// An instruction-set level with its own kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Isa {
    /// AVX-512 F/BW/VL + VNNI (512-bit `vpdpbusd`), with FMA and F16C.
    Avx512Vnni,
    /// AVX2 + FMA + F16C (`vpmaddubsw`).
    Avx2,
    /// Portable Rust.
    Scalar,
}

impl Isa {
    pub const ALL: [Isa; 3] = [Isa::Avx512Vnni, Isa::Avx2, Isa::Scalar];

    /// Whether this CPU can run the kernels of this level.
    pub fn supported(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => {
                Isa::Avx2.supported()
                    && is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vl")
                    && is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The best supported level, detected once. `FERRITE_ISA=avx512|avx2|scalar` caps it
    /// (for comparisons and debugging; an unsupported choice falls back to the best).
    pub fn best() -> Isa {
        static BEST: OnceLock<Isa> = OnceLock::new();
        *BEST.get_or_init(|| {
            let wanted = match std::env::var("FERRITE_ISA").as_deref() {
                Ok("scalar") => Some(Isa::Scalar),
                Ok("avx2") => Some(Isa::Avx2),
                Ok("avx512") => Some(Isa::Avx512Vnni),
                _ => None,
            };
            match wanted {
                Some(isa) if isa.supported() => isa,
                _ => Isa::ALL.into_iter().find(|i| i.supported()).unwrap_or(Isa::Scalar),
            }
        })
    }
}
