#!/usr/bin/env python3
"""The tiny FLUX transformer as a quantized GGUF file in the layout of the common FLUX GGUF files
(city96's FLUX.1-schnell-gguf / FLUX.1-dev-gguf, made by ComfyUI-GGUF's tools/convert.py from
Black Forest Labs' checkpoint), and the BFL -> diffusers name map.

    flux_gguf.py [FIXTURES]     # default crates/ferrite-models/tests/fixtures

Writes
  FIXTURES/tiny-flux/transformer-q8_0.gguf      BFL tensor names (double_blocks.N.img_attn.qkv.weight,
                                                single_blocks.N.linear1.weight, img_in, txt_in,
                                                time_in.in_layer, vector_in, final_layer...),
                                                general.architecture "flux"
  FIXTURES/flux-bfl-names.json                  every BFL name -> diffusers name(s): renames, the
                                                fused qkv / linear1 splits, final_layer's swapped halves
  FIXTURES/tiny-flux-q8_0-reference.safetensors diffusers' transformer output at step 0 (the
                                                inputs of tiny-flux-reference.safetensors) with the
                                                GGUF's dequantized weights, f32

Tensor types, as ComfyUI-GGUF's convert.py chooses them for a Q8_0 file: 1-D tensors (biases, RMS
norm scales) F32; the weights of img_in, txt_in, time_in, vector_in, guidance_in and final_layer
F32 (its "keep at max precision" list); every other 2-D weight Q8_0 when its row width is a
multiple of 32 (the Q8_0 block), else F32. general.file_type is 8, the GGMLQuantizationType value
convert.py stores (not llama.cpp's LlamaFileType 7).

The map follows diffusers' convert_flux_transformer_checkpoint_to_diffusers (single_file_utils.py)
and is checked here: the GGUF is read back, dequantized, mapped with the JSON, and must load
strictly into FluxTransformer2DModel and match the f32 weights within Q8_0's rounding.
"""
import json
import os
import sys

import numpy as np
import torch

F32_PREFIXES = ("time_in.", "txt_in.", "vector_in.", "img_in.", "guidance_in.", "final_layer.")


def bfl_map(cfg):
    """[(bfl_name, spec)], spec = {"diffusers": [names], "split_rows": [sizes] | None,
    "swap_halves": bool}, for a FluxTransformer2DModel config."""
    inner = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    mlp = inner * 4
    out = []

    def plain(bfl, diff):
        for s in ("weight", "bias"):
            out.append((f"{bfl}.{s}", {"diffusers": [f"{diff}.{s}"]}))

    def fused(bfl, diffs, rows):
        for s in ("weight", "bias"):
            out.append((f"{bfl}.{s}", {"diffusers": [f"{d}.{s}" for d in diffs], "split_rows": rows}))

    def scale(bfl, diff):
        out.append((f"{bfl}.scale", {"diffusers": [f"{diff}.weight"]}))

    plain("img_in", "x_embedder")
    plain("txt_in", "context_embedder")
    plain("time_in.in_layer", "time_text_embed.timestep_embedder.linear_1")
    plain("time_in.out_layer", "time_text_embed.timestep_embedder.linear_2")
    plain("vector_in.in_layer", "time_text_embed.text_embedder.linear_1")
    plain("vector_in.out_layer", "time_text_embed.text_embedder.linear_2")
    if cfg["guidance_embeds"]:
        plain("guidance_in.in_layer", "time_text_embed.guidance_embedder.linear_1")
        plain("guidance_in.out_layer", "time_text_embed.guidance_embedder.linear_2")
    for i in range(cfg["num_layers"]):
        b, d = f"double_blocks.{i}", f"transformer_blocks.{i}"
        plain(f"{b}.img_mod.lin", f"{d}.norm1.linear")
        plain(f"{b}.txt_mod.lin", f"{d}.norm1_context.linear")
        fused(f"{b}.img_attn.qkv", [f"{d}.attn.to_q", f"{d}.attn.to_k", f"{d}.attn.to_v"], [inner] * 3)
        fused(f"{b}.txt_attn.qkv", [f"{d}.attn.add_q_proj", f"{d}.attn.add_k_proj", f"{d}.attn.add_v_proj"],
              [inner] * 3)
        scale(f"{b}.img_attn.norm.query_norm", f"{d}.attn.norm_q")
        scale(f"{b}.img_attn.norm.key_norm", f"{d}.attn.norm_k")
        scale(f"{b}.txt_attn.norm.query_norm", f"{d}.attn.norm_added_q")
        scale(f"{b}.txt_attn.norm.key_norm", f"{d}.attn.norm_added_k")
        plain(f"{b}.img_attn.proj", f"{d}.attn.to_out.0")
        plain(f"{b}.txt_attn.proj", f"{d}.attn.to_add_out")
        plain(f"{b}.img_mlp.0", f"{d}.ff.net.0.proj")
        plain(f"{b}.img_mlp.2", f"{d}.ff.net.2")
        plain(f"{b}.txt_mlp.0", f"{d}.ff_context.net.0.proj")
        plain(f"{b}.txt_mlp.2", f"{d}.ff_context.net.2")
    for i in range(cfg["num_single_layers"]):
        b, d = f"single_blocks.{i}", f"single_transformer_blocks.{i}"
        plain(f"{b}.modulation.lin", f"{d}.norm.linear")
        fused(f"{b}.linear1", [f"{d}.attn.to_q", f"{d}.attn.to_k", f"{d}.attn.to_v", f"{d}.proj_mlp"],
              [inner, inner, inner, mlp])
        plain(f"{b}.linear2", f"{d}.proj_out")
        scale(f"{b}.norm.query_norm", f"{d}.attn.norm_q")
        scale(f"{b}.norm.key_norm", f"{d}.attn.norm_k")
    plain("final_layer.linear", "proj_out")
    for s in ("weight", "bias"):
        out.append((f"final_layer.adaLN_modulation.1.{s}",
                    {"diffusers": [f"norm_out.linear.{s}"], "swap_halves": True}))
    return out


def to_bfl(state, mapping):
    """diffusers state dict -> {bfl_name: f32 numpy array}."""
    bfl = {}
    for name, spec in mapping:
        parts = [state[d].float() for d in spec["diffusers"]]
        t = torch.cat(parts, dim=0)
        if spec.get("swap_halves"):
            scale, shift = t.chunk(2, dim=0)  # diffusers: [scale; shift], BFL: [shift; scale]
            t = torch.cat([shift, scale], dim=0)
        bfl[name] = t.numpy()
    return bfl


def from_bfl(tensors, mapping):
    """{bfl_name: tensor} -> diffusers state dict, the inverse of to_bfl."""
    state = {}
    for name, spec in mapping:
        t = tensors[name]
        if spec.get("swap_halves"):
            shift, scale = t.chunk(2, dim=0)
            t = torch.cat([scale, shift], dim=0)
        rows = spec.get("split_rows") or [t.shape[0]]
        for d, part in zip(spec["diffusers"], torch.split(t, rows, dim=0)):
            state[d] = part.contiguous()
    return state


def ggml_type(name, array):
    from gguf import GGMLQuantizationType as Q

    if array.ndim == 1 or (name.startswith(F32_PREFIXES) and name.endswith(".weight")):
        return Q.F32
    return Q.Q8_0 if array.shape[-1] % 32 == 0 else Q.F32


def write_gguf(path, bfl):
    import gguf

    writer = gguf.GGUFWriter(path=None, arch="flux")
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_file_type(int(gguf.GGMLQuantizationType.Q8_0))
    types = {}
    for name in sorted(bfl):
        qtype = ggml_type(name, bfl[name])
        writer.add_tensor(name, gguf.quants.quantize(bfl[name], qtype), raw_dtype=qtype)
        types[name] = qtype.name
    writer.write_header_to_file(path=path)
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return types


def read_gguf(path):
    """{name: dequantized f32 torch tensor in numpy/torch (row-major, [out, in]) order}."""
    import gguf

    reader = gguf.GGUFReader(path)
    out = {}
    for t in reader.tensors:
        shape = [int(n) for n in reversed(t.shape)]
        out[t.name] = torch.from_numpy(
            np.array(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(shape))
    arch = bytes(reader.fields["general.architecture"].parts[-1]).decode()
    return out, arch


def transformer_out(model, ref, size):
    return model(hidden_states=ref[f"{size}.latents_packed"], timestep=ref[f"{size}.transformer_timestep"],
                 guidance=None, pooled_projections=ref["clip.pooled"], encoder_hidden_states=ref["t5.sequence"],
                 txt_ids=ref["txt_ids"], img_ids=ref[f"{size}.img_ids"], return_dict=False)[0]


def main(argv):
    from diffusers import FluxTransformer2DModel
    from safetensors.torch import load_file, save_file

    fixtures = argv[0] if argv else "crates/ferrite-models/tests/fixtures"
    tiny = os.path.join(fixtures, "tiny-flux")
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    model = FluxTransformer2DModel.from_pretrained(os.path.join(tiny, "transformer"),
                                                   torch_dtype=torch.float32).eval()
    cfg = dict(model.config)
    mapping = bfl_map(cfg)
    state = model.state_dict()
    mapped = [d for _, spec in mapping for d in spec["diffusers"]]
    assert sorted(mapped) == sorted(state), set(mapped) ^ set(state)

    gguf_path = os.path.join(tiny, "transformer-q8_0.gguf")
    bfl = to_bfl(state, mapping)
    types = write_gguf(gguf_path, bfl)

    # read back, map to diffusers names, load strictly, compare, and run
    tensors, arch = read_gguf(gguf_path)
    assert arch == "flux" and sorted(tensors) == sorted(bfl)
    for name, array in bfl.items():
        assert list(tensors[name].shape) == list(array.shape), name
    deq = from_bfl(tensors, mapping)
    worst = max(float((deq[k] - state[k]).abs().max() / state[k].abs().max().clamp(min=1e-12)) for k in state)
    assert worst < 1 / 127, worst  # Q8_0: |error| <= half a step of max|block| / 127
    quant = FluxTransformer2DModel.from_config(cfg).eval()
    quant.load_state_dict(deq, strict=True)

    ref = load_file(os.path.join(fixtures, "tiny-flux-reference.safetensors"))
    out, stats = {}, {}
    with torch.no_grad():
        for size in ("s64x64", "s48x80"):
            q = transformer_out(quant, ref, size)
            f = transformer_out(model, ref, size)
            assert torch.allclose(f, ref[f"{size}.transformer_out"], atol=1e-5), size
            out[f"{size}.transformer_out"] = q.contiguous()
            stats[size] = {"max_abs_diff_vs_f32": float((q - f).abs().max()),
                           "f32_max_abs": float(f.abs().max())}
    save_file(out, os.path.join(fixtures, "tiny-flux-q8_0-reference.safetensors"),
              metadata={"made_by": "scripts/diffusion/flux_gguf.py"})

    doc = {
        "made_by": "scripts/diffusion/flux_gguf.py",
        "about": "Black Forest Labs' FLUX.1 tensor names (as in flux1-schnell.safetensors and city96's "
                 "GGUF files, without the 'model.diffusion_model.' prefix some checkpoints add) -> "
                 "diffusers' FluxTransformer2DModel names, as diffusers' "
                 "convert_flux_transformer_checkpoint_to_diffusers maps them",
        "rules": {
            "diffusers": "the diffusers tensor(s) this BFL tensor holds",
            "split_rows": "a fused tensor: the diffusers tensors are consecutive row blocks (dim 0 of "
                          "[out, in]; the GGUF's last dimension) of these sizes, in this order",
            "swap_halves": "final_layer.adaLN_modulation.1: BFL's rows are [shift; scale], diffusers' "
                           "norm_out.linear rows are [scale; shift]",
            "modulation order": "img_mod/txt_mod/modulation.lin rows are (shift, scale, gate) x 2 in "
                                "double blocks and (shift, scale, gate) in single blocks, in BFL and "
                                "diffusers alike: no reordering",
            "scale": "RMS norm '.scale' tensors are diffusers' norm '.weight'",
            "shapes": "numpy/torch order [out, in]; a GGUF lists dimensions reversed ([in, out])",
        },
        "patterns": {
            "double_blocks.{i}.img_attn.qkv.{weight,bias}": "attn.to_q, to_k, to_v of transformer_blocks.{i}; "
                                                           "split_rows [inner, inner, inner]",
            "double_blocks.{i}.txt_attn.qkv.{weight,bias}": "attn.add_q_proj, add_k_proj, add_v_proj; "
                                                           "split_rows [inner, inner, inner]",
            "single_blocks.{i}.linear1.{weight,bias}": "attn.to_q, to_k, to_v, proj_mlp of "
                                                      "single_transformer_blocks.{i}; split_rows "
                                                      "[inner, inner, inner, 4 * inner]",
            "inner": "num_attention_heads * attention_head_dim (3072 for FLUX.1)",
        },
        "tiny_gguf": {
            "file": "tiny-flux/transformer-q8_0.gguf",
            "config": "tiny-flux/transformer/config.json",
            "general.architecture": "flux",
            "general.file_type": int(8),
            "types": "1-D F32; img_in/txt_in/time_in/vector_in/guidance_in/final_layer weights F32; "
                     "other 2-D weights Q8_0 (row width a multiple of 32), else F32",
            "reference": "tiny-flux-q8_0-reference.safetensors: '<size>.transformer_out' [prompt, token, 64], "
                         "diffusers with the dequantized GGUF weights, inputs as in tiny-flux-reference",
            "reference_vs_f32": stats,
        },
        "tensors": {name: dict(spec, shape=list(bfl[name].shape), ggml_type=types[name])
                    for name, spec in mapping},
    }
    with open(os.path.join(fixtures, "flux-bfl-names.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    print(f"wrote {gguf_path} ({len(bfl)} tensors, worst relative weight error {worst:.2e}); {stats}")


if __name__ == "__main__":
    main(sys.argv[1:])
