//! Helpers for the op tests: seeded random inputs and tolerance checks.

use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::{Device, Tensor};

pub fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut r = StdRng::seed_from_u64(seed);
    (0..n).map(|_| r.gen_range(-2.0f32..2.0)).collect()
}

pub fn tensor(data: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_f32(data, shape.to_vec(), &Device::cpu()).expect("test tensor")
}

/// Asserts |a - b| <= atol + rtol * |b| elementwise.
pub fn assert_close(a: &[f32], b: &[f64], atol: f64, rtol: f64) {
    assert_eq!(a.len(), b.len(), "length");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let err = (*x as f64 - y).abs();
        assert!(err <= atol + rtol * y.abs(), "index {i}: got {x}, want {y} (err {err})");
    }
}
