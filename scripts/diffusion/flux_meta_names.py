#!/usr/bin/env python3
"""Every tensor name and shape of the real FLUX.1-schnell, from diffusers and transformers
themselves: the published configs are instantiated on torch's `meta` device (no memory, no
weights) and their state dicts listed.

    flux_meta_names.py [FIXTURES]     # default crates/ferrite-models/tests/fixtures

Writes
  FIXTURES/flux-schnell-configs/     model_index.json, transformer/config.json, vae/config.json,
                                     text_encoder/config.json (CLIP-L), text_encoder_2/config.json
                                     (T5-XXL encoder), scheduler/scheduler_config.json, as the
                                     libraries save them
  FIXTURES/flux-schnell-names.json   per component: every state-dict tensor's name and shape, which
                                     names save_pretrained writes (tied aliases dropped), and the
                                     aliases; for the transformer also the BFL (GGUF) names and
                                     shapes, checked against diffusers' own BFL converter
"""
import json
import os
import shutil
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from flux_gguf import bfl_map  # noqa: E402
from make_tiny_flux import FLUX_VAE, SCHNELL_SCHEDULER  # noqa: E402

# black-forest-labs/FLUX.1-schnell transformer/config.json
SCHNELL_TRANSFORMER = dict(
    patch_size=1,
    in_channels=64,
    num_layers=19,
    num_single_layers=38,
    attention_head_dim=128,
    num_attention_heads=24,
    joint_attention_dim=4096,
    pooled_projection_dim=768,
    guidance_embeds=False,
    axes_dims_rope=(16, 56, 56),
)

# text_encoder/config.json: CLIP ViT-L/14's text tower
CLIP_L = dict(
    vocab_size=49408,
    hidden_size=768,
    intermediate_size=3072,
    projection_dim=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    layer_norm_eps=1e-5,
    attention_dropout=0.0,
    dropout=0.0,
    initializer_range=0.02,
    initializer_factor=1.0,
    bos_token_id=0,
    eos_token_id=2,
    pad_token_id=1,
)

# text_encoder_2/config.json: google/t5-v1_1-xxl's encoder
T5_XXL = dict(
    vocab_size=32128,
    d_model=4096,
    d_kv=64,
    d_ff=10240,
    num_layers=24,
    num_decoder_layers=24,
    num_heads=64,
    relative_attention_num_buckets=32,
    relative_attention_max_distance=128,
    dropout_rate=0.1,
    layer_norm_epsilon=1e-6,
    initializer_factor=1.0,
    feed_forward_proj="gated-gelu",
    is_encoder_decoder=True,
    tie_word_embeddings=False,
    use_cache=True,
    pad_token_id=0,
    eos_token_id=1,
    decoder_start_token_id=0,
)


def listing(model):
    """State-dict names and shapes; which of them save_pretrained writes; tied aliases."""
    state = model.state_dict()
    saved = {n for n, _ in model.named_parameters()} | {n for n, _ in model.named_buffers() if n in state}
    by_storage = {}
    for n, p in list(model.named_parameters(remove_duplicate=False)):
        by_storage.setdefault(id(p), []).append(n)
    aliases = {}
    for names in by_storage.values():
        kept = [n for n in names if n in saved]
        for n in names:
            if n not in saved and kept:
                aliases[n] = kept[0]
    return {
        "tensors": {n: list(t.shape) for n, t in state.items()},
        "saved": sorted(n for n in state if n in saved),
        "aliases": aliases,
        "count": len(state),
        "parameters": sum(t.numel() for n, t in state.items() if n in saved),
    }


def bfl_listing(model, cfg):
    """The transformer under BFL names, shapes from the fused layout, and diffusers' converter run
    on a meta checkpoint of exactly those names and shapes must give back the model's state dict."""
    from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers

    state = model.state_dict()
    out = {}
    for name, spec in bfl_map(cfg):
        parts = [state[d] for d in spec["diffusers"]]
        rows = sum(p.shape[0] for p in parts)
        out[name] = [rows] + list(parts[0].shape[1:])
    ckpt = {f"model.diffusion_model.{n}": torch.empty(s, device="meta") for n, s in out.items()}
    converted = convert_flux_transformer_checkpoint_to_diffusers(ckpt)
    assert not ckpt, f"BFL names the converter did not take: {sorted(ckpt)}"
    got = {n: list(t.shape) for n, t in converted.items()}
    want = {n: list(t.shape) for n, t in state.items()}
    assert got == want, (set(got) ^ set(want), [n for n in got if n in want and got[n] != want[n]])
    return {"tensors": out, "count": len(out),
            "checked": "diffusers' convert_flux_transformer_checkpoint_to_diffusers maps exactly these "
                       "names and shapes (with or without the 'model.diffusion_model.' prefix) onto the "
                       "transformer's state dict"}


def main(argv):
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    fixtures = argv[0] if argv else "crates/ferrite-models/tests/fixtures"
    cfg_dir = os.path.join(fixtures, "flux-schnell-configs")
    if os.path.exists(cfg_dir):
        shutil.rmtree(cfg_dir)

    # the configs as published (text encoders in transformers 4.x's form, which transformers 5
    # would rewrite on save), then the models built from exactly those files
    with torch.device("meta"):  # save_config needs an instance; on meta it costs nothing
        FluxTransformer2DModel(**SCHNELL_TRANSFORMER).save_config(os.path.join(cfg_dir, "transformer"))
        AutoencoderKL(**FLUX_VAE).save_config(os.path.join(cfg_dir, "vae"))
    FlowMatchEulerDiscreteScheduler(**SCHNELL_SCHEDULER).save_config(os.path.join(cfg_dir, "scheduler"))
    published = {
        "text_encoder": dict(_name_or_path="openai/clip-vit-large-patch14", architectures=["CLIPTextModel"],
                             model_type="clip_text_model", torch_dtype="bfloat16", **CLIP_L),
        "text_encoder_2": dict(_name_or_path="google/t5-v1_1-xxl", architectures=["T5EncoderModel"],
                               model_type="t5", classifier_dropout=0.0, dense_act_fn="gelu_new",
                               is_gated_act=True, output_past=True, torch_dtype="bfloat16", **T5_XXL),
    }
    for name, cfg in published.items():
        os.makedirs(os.path.join(cfg_dir, name))
        with open(os.path.join(cfg_dir, name, "config.json"), "w") as f:
            json.dump(dict(sorted(cfg.items())), f, indent=2)
            f.write("\n")
    shutil.copyfile(os.path.join(fixtures, "tiny-flux", "model_index.json"),
                    os.path.join(cfg_dir, "model_index.json"))

    with torch.device("meta"):
        transformer = FluxTransformer2DModel.from_config(
            FluxTransformer2DModel.load_config(os.path.join(cfg_dir, "transformer")))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(os.path.join(cfg_dir, "vae")))
        clip = CLIPTextModel(CLIPTextConfig.from_json_file(os.path.join(cfg_dir, "text_encoder", "config.json")))
        t5 = T5EncoderModel(T5Config.from_json_file(os.path.join(cfg_dir, "text_encoder_2", "config.json")))
    assert transformer.config.num_layers == 19 and t5.config.d_model == 4096 and clip.config.hidden_size == 768

    names = {
        "made_by": "scripts/diffusion/flux_meta_names.py (diffusers/transformers on the meta device)",
        "configs": "flux-schnell-configs/",
        "notes": [
            "shapes are torch's [out, in] ([out, kh, kw, in] is ferrite's conv layout after the load-time "
            "permute; diffusers' conv weights are [out, in, kh, kw] as listed here)",
            "'saved' is what save_pretrained writes: tied aliases (T5's encoder.embed_tokens.weight = "
            "shared.weight) are left out; a loader should accept either name",
        ],
        "transformer": listing(transformer),
        "transformer_bfl": bfl_listing(transformer, dict(transformer.config)),
        "vae": listing(vae),
        "text_encoder": listing(clip),
        "text_encoder_2": listing(t5),
    }
    with open(os.path.join(fixtures, "flux-schnell-names.json"), "w", encoding="utf-8") as f:
        json.dump(names, f, indent=1)
        f.write("\n")
    print({k: (v["count"], v.get("parameters")) for k, v in names.items() if isinstance(v, dict) and "count" in v})


if __name__ == "__main__":
    main(sys.argv[1:])
