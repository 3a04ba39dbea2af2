//! `POST /v1/images/generations` and `ferrite image` on the tiny random FLUX pipeline committed
//! at `crates/ferrite-models/tests/fixtures/tiny-flux/` (diffusers layout, made by
//! `scripts/diffusion/make_tiny_flux.py`).

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{assert_error, raw, raw_post, skip, wait_for_metric, Server};
use serde_json::{json, Value};

const INVALID: &str = "invalid_request_error";
const IMAGES: &str = "/v1/images/generations";

/// The tiny pipeline's folder, or `None` (skipped) when it is missing outside CI.
fn tiny_flux() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ferrite-models/tests/fixtures/tiny-flux");
    if dir.join("model_index.json").exists() {
        return Some(dir);
    }
    skip(&format!("the tiny FLUX pipeline {} is missing", dir.display()))
}

fn flux_server(extra: &[&str]) -> Option<Server> {
    let dir = tiny_flux()?;
    let mut args = vec!["--model", dir.to_str().unwrap(), "--name", "flux"];
    args.extend_from_slice(extra);
    Some(Server::start(&args, &[]))
}

/// Decodes a PNG file: (width, height, color type, bit depth, pixel bytes).
fn decode_png(bytes: &[u8]) -> (u32, u32, png::ColorType, png::BitDepth, Vec<u8>) {
    let mut reader = png::Decoder::new(Cursor::new(bytes.to_vec())).read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    (info.width, info.height, info.color_type, info.bit_depth, buf)
}

/// The PNGs of an images response, decoded, checked to be `width`x`height` 8-bit RGB.
fn pngs(body: &Value, n: usize, width: u32, height: u32) -> Vec<Vec<u8>> {
    assert!(body["created"].as_u64().is_some_and(|t| t > 1_700_000_000), "{body}");
    let data = body["data"].as_array().unwrap_or_else(|| panic!("no data: {body}"));
    assert_eq!(data.len(), n, "{body}");
    data.iter()
        .map(|d| {
            assert!(d.get("url").is_none(), "{d}");
            let bytes = b64_decode(d["b64_json"].as_str().unwrap());
            let (w, h, color, depth, pixels) = decode_png(&bytes);
            assert_eq!((w, h), (width, height));
            assert_eq!((color, depth), (png::ColorType::Rgb, png::BitDepth::Eight));
            assert_eq!(pixels.len(), (width * height * 3) as usize);
            pixels
        })
        .collect()
}

/// Standard base64 (the test decodes independently of the server's encoder).
fn b64_decode(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for &c in s.trim_end_matches('=').as_bytes() {
        let v = ALPHABET.iter().position(|&a| a == c).unwrap_or_else(|| panic!("not base64: {c}")) as u32;
        acc = acc << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits & 0xff) as u8);
        }
    }
    out
}

/// One and two images under both prefixes, the default model, the listing and the metrics.
#[test]
fn images_are_base64_pngs() {
    let Some(s) = flux_server(&[]) else { return };
    let one = json!({"model": "flux", "prompt": "a red cube on a table", "size": "64x32",
        "num_inference_steps": 2, "seed": 7});
    let (status, body) = s.post(IMAGES, &one, None);
    assert_eq!(status, 200, "{body}");
    let first = pngs(&body, 1, 64, 32);
    // The same seed gives the same image.
    let (status, again) = s.post(IMAGES, &one, None);
    assert_eq!(status, 200, "{again}");
    assert_eq!(pngs(&again, 1, 64, 32), first, "seed 7 drew two different images");
    // Two images in one request, under the other prefix, with `model` left to the server.
    let two = json!({"prompt": "a blue sphere", "size": "32x48", "n": 2, "num_inference_steps": 2,
        "response_format": "b64_json", "quality": "hd", "style": "natural", "user": "tester"});
    let (status, body) = s.post("/v1/openai/images/generations", &two, None);
    assert_eq!(status, 200, "{body}");
    pngs(&body, 2, 32, 48);
    let (status, models) = s.get_json("/v1/models");
    assert_eq!(status, 200);
    assert!(models["data"].as_array().unwrap().iter().any(|m| m["id"] == "flux"), "{models}");
    let metrics =
        wait_for_metric(&s, "ferrite:image_requests_running{model_name=\"flux\"} 0", Duration::from_secs(10)).unwrap();
    assert!(metrics.contains("ferrite:image_requests_waiting{model_name=\"flux\"} 0"), "{metrics}");
    let steps = metric(&metrics, "ferrite:image_denoising_steps_total{model_name=\"flux\"}");
    assert_eq!(steps, 6.0, "three requests of 2 steps:\n{metrics}");
    assert!(metrics.contains("route=\"/v1/images/generations\",status=\"200\""), "{metrics}");
}

/// The value of the series line starting with `series`.
fn metric(text: &str, series: &str) -> f64 {
    let line = text.lines().find(|l| l.starts_with(series)).unwrap_or_else(|| panic!("no {series} in:\n{text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// Every malformed request gets 400 with an OpenAI error body naming the field; chat sent to
/// the image model gets 400, an unknown model 404.
#[test]
fn bad_image_requests_get_400() {
    let Some(s) = flux_server(&[]) else { return };
    let base = json!({"model": "flux", "prompt": "a cat", "size": "32x32", "num_inference_steps": 1});
    let with = |extra: Value| {
        let mut b = base.clone();
        b.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        b
    };
    for (extra, param, says) in [
        (json!({"size": "big"}), "size", "WIDTHxHEIGHT"),
        (json!({"size": "512"}), "size", "WIDTHxHEIGHT"),
        (json!({"size": "500x512"}), "size", "multiples of 16"),
        (json!({"size": "16384x16384"}), "size", ""),
        (json!({"n": 0}), "n", "between 1 and 10"),
        (json!({"n": 11}), "n", "between 1 and 10"),
        (json!({"response_format": "url"}), "response_format", "only b64_json is supported"),
        (json!({"response_format": "png"}), "response_format", "unknown response_format"),
        (json!({"prompt": ""}), "prompt", "must not be empty"),
        (json!({"negative_prompt": "blurry"}), "negative_prompt", "negative_prompt"),
        (json!({"quality": "ultra"}), "quality", "unknown quality"),
        (json!({"num_inference_steps": 0}), "num_inference_steps", "at least 1"),
    ] {
        let (status, body) = s.post(IMAGES, &with(extra.clone()), None);
        assert_eq!(status, 400, "{extra}: {body}");
        assert_error(&body, INVALID, Some(param), None);
        assert!(body["error"]["message"].as_str().unwrap().contains(says), "{extra}: {body}");
    }
    // `guidance_scale` needs a guidance embedding (FLUX.1 [dev]); schnell-style configs refuse it.
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(tiny_flux().unwrap().join("transformer/config.json")).unwrap())
            .unwrap();
    let (status, body) = s.post(IMAGES, &with(json!({"guidance_scale": 3.5})), None);
    if config["guidance_embeds"].as_bool() == Some(true) {
        assert_eq!(status, 200, "{body}");
    } else {
        assert_eq!(status, 400, "{body}");
        assert_error(&body, INVALID, Some("guidance_scale"), None);
    }
    let (status, body) = s.post(IMAGES, &with(json!({"colour": "red"})), None);
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("colour"), "{body}");
    let (status, body) = s.post(IMAGES, &with(json!({"model": "dall-e-3"})), None);
    assert_eq!(status, 404, "{body}");
    assert_error(&body, INVALID, Some("model"), Some("model_not_found"));
    let chat = json!({"model": "flux", "messages": [{"role": "user", "content": "Hi"}]});
    let (status, body) = s.post("/v1/chat/completions", &chat, None);
    assert_eq!(status, 400, "{body}");
    assert_error(&body, INVALID, Some("model"), None);
    assert!(body["error"]["message"].as_str().unwrap().contains("does not support chat completions"), "{body}");
    let (status, body) = s.post("/v1/embeddings", &json!({"model": "flux", "input": "hi"}), None);
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("does not support embeddings"), "{body}");
}

/// A client that hangs up mid-job cancels it between steps: the worker (one job at a time) is
/// free again long before the job's steps would have run, and the next job is answered.
#[test]
fn a_client_that_hangs_up_does_not_block_the_next_job() {
    let Some(s) = flux_server(&["--max-concurrent-images", "1"]) else { return };
    let timed = |steps: u32| {
        let started = Instant::now();
        let req = json!({"model": "flux", "prompt": "a cat", "size": "128x128", "num_inference_steps": steps});
        let (status, body) = s.post(IMAGES, &req, None);
        assert_eq!(status, 200, "{body}");
        started.elapsed().as_secs_f64()
    };
    timed(1); // warm up
    let per_step = ((timed(5) - timed(1)) / 4.0).max(1e-3);
    // Enough steps to take a minute or more, so that a job that kept running would show.
    let long_steps = ((60.0 / per_step).ceil() as u64).clamp(50, 1000);
    let steps_before = |s: &Server| metric(&s.get("/metrics").1, "ferrite:image_denoising_steps_total");
    let before = steps_before(&s);
    let body = json!({"model": "flux", "prompt": "a dog", "size": "128x128", "num_inference_steps": long_steps});
    let conn = raw(&s.addr, &raw_post(IMAGES, &body.to_string(), Some("application/json")));
    wait_for_metric(&s, "ferrite:image_requests_running{model_name=\"flux\"} 1", Duration::from_secs(30)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while steps_before(&s) < before + 1.0 {
        assert!(Instant::now() < deadline, "the long job made no step");
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(conn);
    let running = "ferrite:image_requests_running{model_name=\"flux\"} 0";
    let metrics = wait_for_metric(&s, running, Duration::from_secs(30));
    assert!(metrics.is_ok(), "the job kept running after its client left:\n{}", metrics.unwrap_err());
    let done = steps_before(&s) - before;
    assert!(done < long_steps as f64, "the job ran all its {long_steps} steps ({per_step:.3} s/step)");
    eprintln!("cancelled after {done} of {long_steps} steps ({per_step:.3} s/step)");
    let started = Instant::now();
    timed(1);
    assert!(started.elapsed() < Duration::from_secs(60), "the next job waited");
}

/// `ferrite image` writes one PNG per image (numbered when there are several) and draws its
/// step bar on stderr; a bad size is a CLI error with a non-zero exit.
#[test]
fn image_command_writes_pngs() {
    let Some(dir) = tiny_flux() else { return };
    let out_dir = std::env::temp_dir().join(format!("ferrite-image-cli-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join("cube.png");
    let run = |extra: &[&str]| {
        let mut args = vec!["image", "--threads", "2", "--model", dir.to_str().unwrap(), "--prompt", "a red cube"];
        args.extend_from_slice(extra);
        Command::new(env!("CARGO_BIN_EXE_ferrite")).args(&args).output().unwrap()
    };
    let o = out.to_str().unwrap();
    let two = run(&["--size", "64x32", "--steps", "2", "--seed", "3", "-n", "2", "-o", o]);
    let stderr = String::from_utf8_lossy(&two.stderr);
    assert!(two.status.success(), "{stderr}");
    assert!(stderr.contains("denoising [") && stderr.contains("2/2 steps"), "{stderr}");
    assert!(!out.exists(), "with -n 2 the images are numbered");
    for i in 1..=2 {
        let bytes = std::fs::read(out_dir.join(format!("cube-{i}.png"))).unwrap();
        let (w, h, color, _, _) = decode_png(&bytes);
        assert_eq!((w, h, color), (64, 32, png::ColorType::Rgb));
    }
    let one = run(&["--size", "64x32", "--steps", "2", "--seed", "3", "-o", o]);
    assert!(one.status.success(), "{}", String::from_utf8_lossy(&one.stderr));
    assert_eq!(decode_png(&std::fs::read(&out).unwrap()).0, 64);
    let bad = run(&["--size", "50x50", "-o", o]);
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("ferrite: error:") && stderr.contains("multiples of 16"), "{stderr}");
    std::fs::remove_dir_all(&out_dir).unwrap();
}

/// `ferrite bench` on an image model prints one JSON line of positive timings.
#[test]
fn bench_times_an_image_model() {
    let Some(dir) = tiny_flux() else { return };
    let out = Command::new(env!("CARGO_BIN_EXE_ferrite"))
        .args(["bench", "--threads", "2", "--model", dir.to_str().unwrap(), "--size", "32x48", "--steps", "3"])
        .args(["--repetitions", "1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((line["size"].as_str(), line["steps"].as_u64()), (Some("32x48"), Some(3)));
    for key in ["s_per_step", "s_decode", "s_per_image"] {
        assert!(line[key].as_f64().is_some_and(|v| v >= 0.0), "{key} in {line}");
    }
    assert!(line["s_per_image"].as_f64() >= line["s_decode"].as_f64());
}
