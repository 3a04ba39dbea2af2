use std::time::Instant;
fn main() {
    let (m, n, k) = (16384usize, 256usize, 2304usize);
    let a: Vec<f32> = (0..m*k).map(|i| (i % 7) as f32 * 0.1).collect();
    let b: Vec<f32> = (0..n*k).map(|i| (i % 5) as f32 * 0.1).collect();
    let w: Vec<u8> = b.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut c = vec![0f32; m*n];
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    for _ in 0..3 {
        let t = Instant::now();
        pool.install(|| ferrite_tensor::cpu::gemm_f32::gemm(&a, m, k, &w, n, &mut c).unwrap());
        let s = t.elapsed().as_secs_f64();
        println!("{:.3}s {:.1} GFLOP/s", s, 2.0*(m*n*k) as f64/s/1e9);
    }
}
