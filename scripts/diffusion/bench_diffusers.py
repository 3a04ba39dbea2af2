#!/usr/bin/env python3
"""diffusers' CPU speed on the mid-sized random FLUX pipeline: the figure ferrite is compared with.

    bench_diffusers.py DIR [--size 256 --size 512] [--threads 2] [--steps 4] [--runs 2]

DIR is a pipeline written by `make_tiny_flux.py --mid DIR` (transformer width 768 = 6 heads x 128,
rope axes (16, 56, 56), 2 double + 4 single blocks; FLUX's real-size VAE; the tiny text encoders);
it is built there first when DIR has no model_index.json. Everything runs in float32 on the CPU
with torch.set_num_threads(THREADS), one image per call. For each size it prints, from the last
of RUNS runs (the first warms up): seconds per denoising step (the mean of the transformer steps,
timed between step callbacks), seconds for the VAE decode, and seconds per image (the whole
pipeline call: text encoders, steps and decode). Also printed as one JSON line per size.
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def bench_size(pipe, size, steps, max_seq, runs):
    from diffusers import FluxPipeline

    h = w = size
    result = None
    for run in range(runs):
        marks = []

        def on_step(_pipe, _i, _t, _kw):
            marks.append(time.perf_counter())
            return {}

        lat = torch.randn(1, 16, h // 8, w // 8, generator=torch.Generator().manual_seed(run))
        packed = FluxPipeline._pack_latents(lat, 1, 16, h // 8, w // 8)
        start = time.perf_counter()
        with torch.no_grad():
            prompt_embeds, pooled, _ = pipe.encode_prompt("a photograph of a lighthouse at dusk", None,
                                                          max_sequence_length=max_seq)
        t_text = time.perf_counter() - start
        t0 = time.perf_counter()
        latents = pipe(prompt_embeds=prompt_embeds, pooled_prompt_embeds=pooled, height=h, width=w,
                       num_inference_steps=steps, guidance_scale=0.0, latents=packed,
                       max_sequence_length=max_seq, output_type="latent",
                       callback_on_step_end=on_step).images
        t_steps = time.perf_counter() - t0
        with torch.no_grad():
            start = time.perf_counter()
            un = pipe._unpack_latents(latents, h, w, pipe.vae_scale_factor)
            image = pipe.vae.decode(un / pipe.vae.config.scaling_factor + pipe.vae.config.shift_factor,
                                    return_dict=False)[0]
            pipe.image_processor.postprocess(image, output_type="np")
            t_decode = time.perf_counter() - start
        # step i ends at marks[i]; the first also holds the pipeline's set-up (latent ids,
        # timesteps), which is small next to a step
        durations = [marks[0] - t0] + [marks[i] - marks[i - 1] for i in range(1, len(marks))]
        result = {
            "size": f"{w}x{h}",
            "steps": steps,
            "image_tokens": (h // 16) * (w // 16),
            "text_tokens": max_seq,
            "s_per_step": sum(durations) / len(durations),
            "s_steps": durations,
            "s_vae_decode": t_decode,
            "s_text_encoders": t_text,
            "s_per_image": t_text + t_steps + t_decode,
        }
    return result


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir")
    ap.add_argument("--size", type=int, action="append", help="square image size (repeatable; default 256 and 512)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--max-seq", type=int, default=256, help="T5 max_sequence_length (text tokens)")
    ap.add_argument("--runs", type=int, default=2, help="runs per size; the last is reported")
    args = ap.parse_args(argv)
    sizes = args.size or [256, 512]

    torch.set_num_threads(args.threads)
    from diffusers import FluxPipeline

    if not os.path.exists(os.path.join(args.dir, "model_index.json")):
        from make_tiny_flux import build

        print(f"building the mid pipeline in {args.dir}", flush=True)
        build(args.dir, mid=True)
    pipe = FluxPipeline.from_pretrained(args.dir, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    cfg = pipe.transformer.config
    print(f"diffusers on {args.threads} threads: transformer {cfg.num_attention_heads}x{cfg.attention_head_dim}, "
          f"{cfg.num_layers} double + {cfg.num_single_layers} single blocks; VAE "
          f"{list(pipe.vae.config.block_out_channels)}; {args.steps} steps; {args.max_seq} text tokens")
    for size in sizes:
        r = bench_size(pipe, size, args.steps, args.max_seq, args.runs)
        print(f"{r['size']}: {r['s_per_step']:.3f} s/step, VAE decode {r['s_vae_decode']:.3f} s, "
              f"{r['s_per_image']:.3f} s/image", flush=True)
        print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
