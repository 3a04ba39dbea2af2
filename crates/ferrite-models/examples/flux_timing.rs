use ferrite_models::diffusion::FluxPipeline;
use ferrite_tensor::Device;
use std::ops::ControlFlow;
use std::time::Instant;
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(&args[1]);
    let size: usize = args[2].parse().unwrap();
    let dev = Device::cpu_with_threads(2).unwrap();
    let p = FluxPipeline::load(&dir, &dev).unwrap();
    let tp = p.token_pixels();
    let (rows, cols) = (size / tp, size / tp);
    let t0 = Instant::now();
    let emb = p.encode_prompts(&["a cat"]).unwrap();
    eprintln!("text {:.3}", t0.elapsed().as_secs_f64());
    let lat = p.noise(1, rows, cols, 1).unwrap();
    let mut last = Instant::now();
    let x = p
        .denoise(lat, rows, cols, &emb, 4, None, &mut |i, n| {
            eprintln!("step {i}/{n} {:.3}", last.elapsed().as_secs_f64());
            last = Instant::now();
            ControlFlow::Continue(())
        })
        .unwrap();
    let t1 = Instant::now();
    let px = p.decode(&x, rows, cols).unwrap();
    let _ = px.to_vec_f32().unwrap();
    eprintln!("decode {:.3}", t1.elapsed().as_secs_f64());
    eprintln!("total {:.3}", t0.elapsed().as_secs_f64());
}
