#!/usr/bin/env python3
"""diffusers' own outputs for the tiny FLUX pipeline, the golden data of the Rust pipeline's tests.

    flux_reference.py [FIXTURES]     # default crates/ferrite-models/tests/fixtures

Reads FIXTURES/tiny-flux/ (written by make_tiny_flux.py) and writes
FIXTURES/tiny-flux-reference.safetensors (every tensor f32, token ids included: they are exact)
and FIXTURES/tiny-flux-reference.json, which says what each tensor is, its shape and layout, and
the prompts, sizes, steps and settings used.

Everything runs in float32 on the CPU with one thread, from the stored (f16/bf16-rounded) weights
upcast to f32 (`FluxPipeline.from_pretrained(..., torch_dtype=torch.float32)`). The initial
latents are fixed (seeded torch.randn) and passed in, so no RNG has to be matched.
"""
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_tiny_flux import DEV_SCHEDULER  # noqa: E402

PROMPTS = [
    "A photograph of an astronaut riding a horse on the moon.",
    "Un café à Zürich, l'été: crème brûlée & naïve art — ¿qué? ¡Sí!",
]
T5_MAX_LEN = 32
STEPS = 4
# (name, height, width): a square and a non-square size (latent rows != cols after packing)
SIZES = [("s64x64", 64, 64), ("s48x80", 48, 80)]
DEV_GUIDANCE = 3.5


class Recorder:
    """Every transformer call's inputs and output, and the latents after every step."""

    def __init__(self, transformer):
        self.calls = []
        self.steps = []
        transformer.register_forward_hook(self.on_forward, with_kwargs=True)

    def on_forward(self, _module, _args, kwargs, output):
        self.calls.append({k: (v.detach().clone() if torch.is_tensor(v) else v) for k, v in kwargs.items()}
                          | {"output": output[0].detach().clone()})

    def on_step_end(self, _pipe, _i, _t, kw):
        self.steps.append(kw["latents"].detach().clone())
        return {}


def initial_latents(seed, height, width):
    """Fixed initial noise [2, 16, h/8, w/8] and its packed form [2, (h/16)(w/16), 64]."""
    from diffusers import FluxPipeline

    h, w = height // 8, width // 8
    unpacked = torch.randn(len(PROMPTS), 16, h, w, generator=torch.Generator().manual_seed(seed))
    packed = FluxPipeline._pack_latents(unpacked, len(PROMPTS), 16, h, w)
    return unpacked, packed


def run(pipe, height, width, packed, guidance_scale):
    """One full pipeline run; returns the recorder, the final packed latents, the VAE output in
    [-1, 1] (NCHW) and the uint8 images (NHWC)."""
    rec = Recorder(pipe.transformer)
    common = dict(prompt=PROMPTS, height=height, width=width, num_inference_steps=STEPS,
                  guidance_scale=guidance_scale, latents=packed.clone(), max_sequence_length=T5_MAX_LEN,
                  callback_on_step_end=rec.on_step_end)
    final = pipe(output_type="latent", **common).images
    rec.calls.clear()
    rec.steps.clear()
    # the same run again, decoded: "pt" is the VAE output passed through postprocess, so decode
    # the final latents here the way the pipeline does, and get the uint8 image from "np"
    images_np = pipe(output_type="np", **common).images
    unpacked = pipe._unpack_latents(final, height, width, pipe.vae_scale_factor)
    vae_in = unpacked / pipe.vae.config.scaling_factor + pipe.vae.config.shift_factor
    decoded = pipe.vae.decode(vae_in, return_dict=False)[0]
    # diffusers' VaeImageProcessor.numpy_to_pil: (x * 255).round().astype("uint8")
    uint8 = (images_np * 255).round().astype("uint8")
    check = ((decoded / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255).round().astype("uint8")
    assert np.array_equal(check, uint8), "decoding the final latents again gave another image"
    return rec, final, vae_in, decoded, uint8


def capture(modules, run):
    """Runs run() with forward hooks on {name: module}; returns {name: output}."""
    got, handles = {}, []
    for name, module in modules.items():
        def hook(_m, _a, output, name=name):
            got[name] = output
        handles.append(module.register_forward_hook(hook))
    try:
        run()
    finally:
        for h in handles:
            h.remove()
    return got


def transformer_stages(transformer, kwargs):
    """The transformer's intermediate values for one call (the kwargs the pipeline passed)."""
    modules = {"temb": transformer.time_text_embed, "rope": transformer.pos_embed,
               "x_embedded": transformer.x_embedder, "context_embedded": transformer.context_embedder}
    modules |= {f"double{i}": b for i, b in enumerate(transformer.transformer_blocks)}
    modules |= {f"single{i}": b for i, b in enumerate(transformer.single_transformer_blocks)}
    args = {k: v for k, v in kwargs.items() if k != "output"}
    out = {}
    got = capture(modules, lambda: out.setdefault("y", transformer(**args)[0]))
    assert torch.equal(out["y"], kwargs["output"])
    return got


def vae_stages(vae, latents):
    """The VAE decoder's intermediate values for latents [n, 16, h, w] (NCHW)."""
    dec = vae.decoder
    modules = {"conv_in": dec.conv_in, "mid_block": dec.mid_block}
    modules |= {f"up_block{i}": b for i, b in enumerate(dec.up_blocks)}
    return capture(modules, lambda: vae.decode(latents, return_dict=False))


def main(argv):
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from safetensors.torch import save_file

    fixtures = argv[0] if argv else "crates/ferrite-models/tests/fixtures"
    tiny = os.path.join(fixtures, "tiny-flux")
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    out, doc = {}, {}

    def put(name, tensor, what, layout=None):
        t = torch.as_tensor(tensor).detach().to(torch.float32).contiguous()
        out[name] = t
        doc[name] = {"shape": list(t.shape), "what": what} | ({"layout": layout} if layout else {})

    with torch.no_grad():
        pipe = FluxPipeline.from_pretrained(tiny, torch_dtype=torch.float32)
        pipe.set_progress_bar_config(disable=True)

        # text encoders, exactly as FluxPipeline.encode_prompt calls them
        clip_ids = pipe.tokenizer(PROMPTS, padding="max_length", max_length=77, truncation=True,
                                  return_tensors="pt").input_ids
        clip_out = pipe.text_encoder(clip_ids, output_hidden_states=False)
        t5_ids = pipe.tokenizer_2(PROMPTS, padding="max_length", max_length=T5_MAX_LEN, truncation=True,
                                  return_tensors="pt").input_ids
        t5_seq = pipe.text_encoder_2(t5_ids, output_hidden_states=False)[0]
        prompt_embeds, pooled, text_ids = pipe.encode_prompt(PROMPTS, None, max_sequence_length=T5_MAX_LEN)
        assert torch.equal(prompt_embeds, t5_seq) and torch.equal(pooled, clip_out.pooler_output)
        put("clip.input_ids", clip_ids, "CLIP token ids, padded to 77 with <|endoftext|> (49407)",
            "[prompt, token]")
        put("clip.last_hidden", clip_out.last_hidden_state, "CLIP final_layer_norm output",
            "[prompt, token, hidden]")
        put("clip.pooled", clip_out.pooler_output,
            "CLIP pooled output: last_hidden at the position of the largest id (<|endoftext|>, the "
            "legacy rule transformers uses when eos_token_id == 2); the transformer's pooled_projections",
            "[prompt, hidden]")
        put("t5.input_ids", t5_ids, f"T5 token ids, truncated/padded to max_sequence_length {T5_MAX_LEN} "
            "with <pad> (0); the last real token is </s> (1) also when truncated", "[prompt, token]")
        put("t5.sequence", t5_seq, "T5 encoder output (no attention mask: pad tokens are attended, as "
            "FluxPipeline does); the transformer's encoder_hidden_states", "[prompt, token, d_model]")
        put("txt_ids", text_ids, "the text tokens' rope positions (all zero)", "[token, 3]")

        for i, (name, height, width) in enumerate(SIZES):
            unpacked, packed = initial_latents(100 + i, height, width)
            rec, final, vae_in, decoded, uint8 = run(pipe, height, width, packed, guidance_scale=0.0)
            first = rec.calls[0]
            assert torch.equal(first["hidden_states"], packed)
            assert len(rec.calls) == STEPS and len(rec.steps) == STEPS
            h2, w2 = height // 16, width // 16
            put(f"{name}.latents", unpacked, f"initial noise for {width}x{height} (W x H), seeded randn",
                "[prompt, channel 16, row, col] (NCHW)")
            put(f"{name}.latents_packed", packed,
                f"the same noise packed 2x2: token = row2 * {w2} + col2, feature = c * 4 + dy * 2 + dx",
                "[prompt, token, 64]")
            put(f"{name}.img_ids", first["img_ids"], "the image tokens' rope positions (0, row2, col2)",
                "[token, 3]")
            put(f"{name}.sigmas", pipe.scheduler.sigmas, f"scheduler sigmas for {STEPS} steps, with the final 0",
                "[step + 1]")
            put(f"{name}.timesteps", pipe.scheduler.timesteps, "scheduler timesteps (sigma * 1000)", "[step]")
            put(f"{name}.transformer_timestep", first["timestep"],
                "the timestep passed to the transformer at step 0: timesteps[0] / 1000", "[prompt]")
            put(f"{name}.transformer_out", first["output"],
                "transformer output (velocity) at step 0 for latents_packed", "[prompt, token, 64]")
            put(f"{name}.step_latents", torch.stack(rec.steps),
                "packed latents after each Euler step", "[step, prompt, token, 64]")
            put(f"{name}.final_latents", final, "packed latents after the last step", "[prompt, token, 64]")
            put(f"{name}.vae_input", vae_in, "final latents unpacked, / scaling_factor + shift_factor",
                "[prompt, 16, h/8, w/8] (NCHW)")
            put(f"{name}.decoded", decoded, "VAE decoder output, nominally in [-1, 1], not clamped",
                "[prompt, rgb, row, col] (NCHW)")
            if i == 0:
                st = transformer_stages(pipe.transformer, first)
                t = f"{name}.tx"
                put(f"{t}.temb", st["temb"], "time_text_embed output: timestep (and guidance) embedding + "
                    "pooled-text embedding, the AdaLN conditioning vector", "[prompt, inner]")
                cos, sin = st["rope"]
                put(f"{t}.rope_cos", cos, "FluxPosEmbed cos table for the 32 text then the image tokens, "
                    "each frequency repeated twice (diffusers' interleaved pairs)", "[token, head_dim]")
                put(f"{t}.rope_sin", sin, "the matching sin table", "[token, head_dim]")
                put(f"{t}.x_embedded", st["x_embedded"], "x_embedder (img_in) output", "[prompt, img token, inner]")
                put(f"{t}.context_embedded", st["context_embedded"], "context_embedder (txt_in) output",
                    "[prompt, txt token, inner]")
                for k in sorted(st):
                    if k.startswith(("double", "single")):
                        txt, img = st[k]
                        put(f"{t}.{k}.txt", txt, f"{k} block output, text stream", "[prompt, txt token, inner]")
                        put(f"{t}.{k}.img", img, f"{k} block output, image stream", "[prompt, img token, inner]")
                vs = vae_stages(pipe.vae, vae_in[:1])
                for k in ["conv_in", "mid_block"] + [f"up_block{j}" for j in range(len(pipe.vae.decoder.up_blocks))]:
                    put(f"{name}.vae.{k}", vs[k], f"VAE decoder {k} output for prompt 0's vae_input",
                        "[1, channel, row, col] (NCHW)")
            put(f"{name}.image_u8", uint8,
                "final 8-bit image: round(clamp(decoded / 2 + 0.5, 0, 1) * 255), numpy round "
                "(half to even), as output_type='np' then VaeImageProcessor.numpy_to_pil",
                "[prompt, row, col, rgb] (NHWC)")

        # FLUX.1-dev style: the guidance-embedding transformer with dev's scheduler config
        guided = FluxTransformer2DModel.from_pretrained(os.path.join(tiny, "transformer-guidance"),
                                                        torch_dtype=torch.float32)
        dev = FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler(**DEV_SCHEDULER), vae=pipe.vae,
                           text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer,
                           text_encoder_2=pipe.text_encoder_2, tokenizer_2=pipe.tokenizer_2,
                           transformer=guided)
        dev.set_progress_bar_config(disable=True)
        name, height, width = SIZES[0]
        unpacked, packed = initial_latents(100, height, width)
        rec, final, vae_in, decoded, uint8 = run(dev, height, width, packed, guidance_scale=DEV_GUIDANCE)
        first = rec.calls[0]
        assert torch.equal(first["hidden_states"], packed)
        from diffusers.pipelines.flux.pipeline_flux import calculate_shift
        mu = calculate_shift(packed.shape[1], DEV_SCHEDULER["base_image_seq_len"],
                             DEV_SCHEDULER["max_image_seq_len"], DEV_SCHEDULER["base_shift"],
                             DEV_SCHEDULER["max_shift"])
        put("dev.sigmas", dev.scheduler.sigmas,
            f"dev scheduler sigmas for {STEPS} steps at {width}x{height} ({packed.shape[1]} tokens, "
            f"mu = calculate_shift = {mu!r}), with the final 0", "[step + 1]")
        put("dev.timesteps", dev.scheduler.timesteps, "dev scheduler timesteps (sigma * 1000)", "[step]")
        put("dev.transformer_timestep", first["timestep"], "timesteps[0] / 1000, passed at step 0", "[prompt]")
        put("dev.guidance", first["guidance"], f"the guidance passed to the transformer ({DEV_GUIDANCE}, "
            "not scaled; the model multiplies it by 1000 as it does the timestep)", "[prompt]")
        put("dev.transformer_out", first["output"],
            f"transformer-guidance output at step 0 for {name}.latents_packed", "[prompt, token, 64]")
        put("dev.final_latents", final, "packed latents after the last step", "[prompt, token, 64]")
        put("dev.image_u8", uint8, "final 8-bit image, as for the schnell runs", "[prompt, row, col, rgb] (NHWC)")

    ref = os.path.join(fixtures, "tiny-flux-reference.safetensors")
    save_file(out, ref, metadata={"made_by": "scripts/diffusion/flux_reference.py"})
    meta = {
        "made_by": "scripts/diffusion/flux_reference.py (diffusers, float32, CPU, 1 thread)",
        "pipeline": "tiny-flux/ (guidance variant: tiny-flux/transformer-guidance/)",
        "prompts": PROMPTS,
        "t5_max_sequence_length": T5_MAX_LEN,
        "clip_max_length": 77,
        "steps": STEPS,
        "sizes": {name: {"height": h, "width": w, "latent_rows": h // 8, "latent_cols": w // 8,
                         "tokens": (h // 16) * (w // 16)} for name, h, w in SIZES},
        "schnell": {"guidance_scale": 0.0, "scheduler": "tiny-flux/scheduler/scheduler_config.json",
                    "sigmas_before_shift": f"np.linspace(1.0, 1/{STEPS}, {STEPS})"},
        "dev": {"size": SIZES[0][0], "guidance_scale": DEV_GUIDANCE, "scheduler_config": DEV_SCHEDULER,
                "mu": mu},
        "dtypes": "every tensor is f32; token ids are exact integers stored as f32",
        "notes": [
            "size names are s{height}x{width}: s48x80 is 48 rows by 80 columns, an OpenAI size of '80x48'",
            "CLIP ids: <|startoftext|> (49406), the text's BPE ids (truncated to 75), <|endoftext|> (49407), "
            "then 49407 up to 77; the same ids as OpenAI's CLIP tokenizer (open_clip) before its 0 padding",
            "T5 ids: the Unigram ids then </s> (1), truncated to 32 with </s> kept last, then <pad> (0)",
            "the weights are those stored in tiny-flux/ (transformer and vae f32, text_encoder f16, "
            "text_encoder_2 bf16) upcast to f32; all compute in f32",
            "Euler step: latents += (sigma_next - sigma) * transformer_out",
            "the transformer gets timestep = t / 1000 and scales it (and guidance) by 1000 inside",
            "dev sigmas: s = linspace(1, 1/steps, steps), then exp(mu) / (exp(mu) + (1/s - 1)) "
            "(use_dynamic_shifting: shift 3.0 is not used), then a final 0",
            "packing: token = (row // 2) * (cols // 2) + col // 2, feature = channel * 4 + "
            "(row % 2) * 2 + col % 2, in latent rows/cols",
        ],
        "tensors": doc,
    }
    with open(os.path.join(fixtures, "tiny-flux-reference.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {ref} ({len(out)} tensors)")


if __name__ == "__main__":
    main(sys.argv[1:])
