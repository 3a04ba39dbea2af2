#!/usr/bin/env python3
"""Builds a tiny, randomly initialised FLUX.1 pipeline in the diffusers layout.

    make_tiny_flux.py OUTDIR            # the tiny pipeline (the committed test fixture)
    make_tiny_flux.py --mid OUTDIR      # a mid-sized pipeline for benchmarks (not committed)

The committed fixture is crates/ferrite-models/tests/fixtures/tiny-flux/ (then
`flux_reference.py` writes diffusers' outputs for it beside it). Everything is seeded, so a rerun
writes the same bytes.

Components and the dtypes they are stored in (so every safetensors loader path is exercised):
  transformer/     FluxTransformer2DModel, f32   (2 double + 2 single blocks, 2 heads x 16)
  vae/             AutoencoderKL, f32            (16 latent channels, 3 upsamplings, FLUX factors)
  text_encoder/    CLIPTextModel, f16            (hidden 32, 2 layers, real CLIP-L vocab 49408)
  tokenizer/       CLIP's real BPE (vocab.json, merges.txt, tokenizer.json) from open_clip
  text_encoder_2/  T5EncoderModel, bf16          (d_model 32, gated-gelu, 2 layers, 4 heads)
  tokenizer_2/     a small Unigram tokenizer trained here, T5's special tokens and post-processor
  scheduler/       FlowMatchEulerDiscreteScheduler with FLUX.1-schnell's config
  transformer-guidance/  the same transformer shape with guidance_embeds=True (FLUX.1-dev style), f32

Needs the environment of scripts/diffusion/requirements.txt (python3 -m venv
~/.cache/ferrite/diffusion-ref && pip install -r scripts/diffusion/requirements.txt).
"""
import argparse
import gzip
import json
import os
import shutil
import sys
import tempfile

import torch

# FLUX.1-schnell's scheduler/scheduler_config.json
SCHNELL_SCHEDULER = dict(
    num_train_timesteps=1000,
    shift=1.0,
    use_dynamic_shifting=False,
    base_shift=0.5,
    max_shift=1.15,
    base_image_seq_len=256,
    max_image_seq_len=4096,
)

# FLUX.1-dev's scheduler/scheduler_config.json (for the guidance-embedding variant)
DEV_SCHEDULER = dict(SCHNELL_SCHEDULER, shift=3.0, use_dynamic_shifting=True)

TINY_TRANSFORMER = dict(
    patch_size=1,
    in_channels=64,
    num_layers=2,
    num_single_layers=2,
    attention_head_dim=16,
    num_attention_heads=2,
    joint_attention_dim=32,
    pooled_projection_dim=32,
    guidance_embeds=False,
    axes_dims_rope=(4, 6, 6),
)

TINY_VAE = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(16, 16, 32, 32),
    layers_per_block=1,
    act_fn="silu",
    latent_channels=16,
    norm_num_groups=8,
    sample_size=64,
    scaling_factor=0.3611,
    shift_factor=0.1159,
    force_upcast=True,
    use_quant_conv=False,
    use_post_quant_conv=False,
    mid_block_add_attention=True,
)

# FLUX.1-schnell's vae/config.json (the real-size VAE, used by the mid pipeline)
FLUX_VAE = dict(TINY_VAE, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                norm_num_groups=32, sample_size=1024)

TINY_CLIP = dict(
    vocab_size=49408,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    layer_norm_eps=1e-5,
    projection_dim=32,
    bos_token_id=0,
    eos_token_id=2,
    pad_token_id=1,
)

TINY_T5 = dict(
    d_model=32,
    d_kv=8,
    d_ff=64,
    num_layers=2,
    num_decoder_layers=2,
    num_heads=4,
    relative_attention_num_buckets=32,
    relative_attention_max_distance=128,
    feed_forward_proj="gated-gelu",
    dropout_rate=0.0,
    layer_norm_epsilon=1e-6,
    tie_word_embeddings=False,
    is_encoder_decoder=False,
    use_cache=False,
    pad_token_id=0,
    eos_token_id=1,
    decoder_start_token_id=0,
)

MID_TRANSFORMER = dict(TINY_TRANSFORMER, num_layers=2, num_single_layers=4, attention_head_dim=128,
                       num_attention_heads=6, axes_dims_rope=(16, 56, 56))

T5_VOCAB = 1000
T5_MAX_LENGTH = 512

# The training text of the tiny T5 tokenizer: plain sentences plus accented and punctuated words,
# so the reference prompts are covered by real pieces (characters never seen map to <unk>).
T5_CORPUS = [
    "A photograph of an astronaut riding a horse on the moon.",
    "A watercolor painting of a quiet harbor at sunrise, with small fishing boats.",
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "An oil painting of a lighthouse in a storm, dramatic clouds and crashing waves.",
    "A cozy cabin in the snowy mountains, warm light glowing from the windows.",
    "A close-up portrait of an old sailor with a white beard and a blue cap.",
    "A futuristic city skyline at night, neon signs reflected in the wet streets.",
    "A bowl of fresh fruit on a wooden table: apples, pears, grapes and oranges.",
    "A red bicycle leaning against a yellow wall in a narrow street.",
    "A cat sleeping on a stack of old books beside a window.",
    "Children playing football in a park on a sunny afternoon.",
    "A dense forest with tall pine trees and a misty path between them.",
    "A small robot watering plants in a greenhouse full of flowers.",
    "A steaming cup of coffee and a croissant on a marble counter.",
    "An ancient castle on a hill, surrounded by green fields and sheep.",
    "A crème brûlée in a café in Zürich, served with a naïve smile.",
    "Über den Wolken, à la française: déjà vu, façade, fiancée, jalapeño, señor.",
    "Él comió piñata en la mañana; ¿dónde está el niño? ¡Qué día!",
    "Crêpes, pâté, hôtel, forêt, élève, Noël, où, garçon, Ångström, smørrebrød.",
    "Three birds (two blue, one red) sat on the fence -- quietly, at dawn!",
    "Numbers 1, 2, 3, 42 and 1024; prices like $5.99 or 10% off; time 12:30.",
    "\"Quoted words\", 'single quotes', semicolons; colons: dashes - and ellipses...",
    "A tiny house made of candy, with chocolate doors and sugar windows.",
    "A dragon flying over a medieval village at sunset, orange and purple sky.",
    "A macro photo of a dew drop on a green leaf, the morning light shining.",
    "A jazz band playing in a dim club, saxophone, piano, bass and drums.",
    "A map of an imaginary island with mountains, rivers, towns and roads.",
    "The painter mixed colors: crimson, ochre, cobalt, emerald, violet and gold.",
    "A street market in Lisbon with fish, bread, cheese, olives and wine.",
    "A calm lake reflecting snowy peaks under a clear blue winter sky.",
]


def perturb_constant_params(module, gen):
    """Parameters that start constant (norm weights of 1, zero biases) get noise, so that a loader
    which mixes them up, or skips them, gives a different answer."""
    with torch.no_grad():
        for _, p in sorted(module.named_parameters(), key=lambda kv: kv[0]):
            flat = p.detach().reshape(-1)
            if flat.numel() > 0 and bool((flat == flat[0]).all()):
                p.add_(0.1 * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def bytes_to_unicode():
    """GPT-2/CLIP's byte to printable-character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(2 ** 8):
        if b not in bs:
            bs.append(b)
            cs.append(2 ** 8 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def clip_vocab_and_merges():
    """CLIP's vocab (49408 entries) and merges, built from open_clip's copy of OpenAI's BPE file
    exactly as OpenAI's SimpleTokenizer and openai/clip-vit-large-patch14's vocab.json do."""
    import open_clip

    path = os.path.join(os.path.dirname(open_clip.__file__), "bpe_simple_vocab_16e6.txt.gz")
    lines = gzip.open(path).read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1:49152 - 256 - 2 + 1]]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == 49408, len(vocab)
    return {tok: i for i, tok in enumerate(vocab)}, merges


def save_clip_tokenizer(outdir):
    from transformers import CLIPTokenizer

    vocab, merges = clip_vocab_and_merges()
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "vocab.json"), "w", encoding="utf-8") as f:
            json.dump(vocab, f, ensure_ascii=False)
        with open(os.path.join(tmp, "merges.txt"), "w", encoding="utf-8") as f:
            f.write("#version: 0.2\n")
            f.write("".join(f"{a} {b}\n" for a, b in merges))
        tok = CLIPTokenizer(vocab=os.path.join(tmp, "vocab.json"),
                            merges=os.path.join(tmp, "merges.txt"),
                            pad_token="<|endoftext|>", model_max_length=77)
        tok.save_pretrained(outdir)
        # the two source files as openai/clip-vit-large-patch14 ships them
        for name in ("vocab.json", "merges.txt"):
            shutil.copyfile(os.path.join(tmp, name), os.path.join(outdir, name))
    return tok


def t5_corpus():
    """T5_CORPUS, plus 1000 lines of 12 words drawn (seeded) from the 3000 first whole words of
    CLIP's merges, so that the Unigram trainer finds about T5_VOCAB pieces."""
    import random

    _, merges = clip_vocab_and_merges()
    words = [a + b[:-4] for a, b in merges if b.endswith("</w>") and (a + b[:-4]).isascii()
             and (a + b[:-4]).isalpha()
             and len(a + b) >= 7][:3000]
    rng = random.Random(0)
    return T5_CORPUS * 4 + [" ".join(rng.choice(words) for _ in range(12)) for _ in range(1000)]


def train_t5_vocab():
    """A Unigram vocabulary trained on t5_corpus(): [(piece, score)], <pad>=0, </s>=1, <unk>=2.

    The trainer's set of pieces is the same on every run but its scores wobble in the third
    decimal, so each piece's score is recomputed here, deterministically, as the log of its
    relative frequency as a substring of the corpus' '▁'-prefixed words; the pieces are then
    ordered by score (then by text), as a SentencePiece model lists them."""
    import math

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    corpus = t5_corpus()
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True),
    ])
    trainer = trainers.UnigramTrainer(vocab_size=T5_VOCAB, special_tokens=["<pad>", "</s>", "<unk>"],
                                      unk_token="<unk>")
    tok.train_from_iterator(corpus, trainer=trainer)
    trained = [p for p, _ in json.loads(tok.to_str())["model"]["vocab"]]
    assert trained[:3] == ["<pad>", "</s>", "<unk>"], trained[:3]

    words = {}
    for line in corpus:
        for w in line.split():
            words["▁" + w] = words.get("▁" + w, 0) + 1
    counts = {p: max(1, sum(n * w.count(p) for w, n in words.items())) for p in trained[3:]}
    total = sum(counts.values())
    scored = sorted(((p, round(math.log(c / total), 6)) for p, c in counts.items()),
                    key=lambda ps: (-ps[1], ps[0]))
    return [(p, 0.0) for p in trained[:3]] + scored


def save_t5_tokenizer(outdir):
    from transformers import T5Tokenizer

    tok = T5Tokenizer(vocab=train_t5_vocab(), extra_ids=0, model_max_length=T5_MAX_LENGTH)
    tok.save_pretrained(outdir)
    special = os.path.join(outdir, "special_tokens_map.json")
    if not os.path.exists(special):
        with open(special, "w") as f:
            json.dump({"eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}, f, indent=2)
            f.write("\n")
    return tok


def seeded(seed):
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed + 1000)


def build_transformer(cfg, seed):
    from diffusers import FluxTransformer2DModel

    gen = seeded(seed)
    model = FluxTransformer2DModel(**cfg)
    perturb_constant_params(model, gen)
    return model.eval()


def build_vae(cfg, seed):
    from diffusers import AutoencoderKL

    gen = seeded(seed)
    vae = AutoencoderKL(**cfg)
    perturb_constant_params(vae, gen)
    return vae.eval()


def build_clip(seed):
    from transformers import CLIPTextConfig, CLIPTextModel

    gen = seeded(seed)
    model = CLIPTextModel(CLIPTextConfig(**TINY_CLIP))
    perturb_constant_params(model, gen)
    return model.eval()


def build_t5(vocab_size, seed):
    from transformers import T5Config, T5EncoderModel

    gen = seeded(seed)
    model = T5EncoderModel(T5Config(vocab_size=vocab_size, **TINY_T5))
    perturb_constant_params(model, gen)
    return model.eval()


def build(outdir, mid=False):
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline

    torch.use_deterministic_algorithms(True)
    if os.path.exists(outdir):
        shutil.rmtree(outdir)
    os.makedirs(outdir)
    tok_dir = os.path.join(outdir, "tokenizer")
    tok2_dir = os.path.join(outdir, "tokenizer_2")
    clip_tok = save_clip_tokenizer(tok_dir)
    t5_tok = save_t5_tokenizer(tok2_dir)

    transformer = build_transformer(MID_TRANSFORMER if mid else TINY_TRANSFORMER, seed=1)
    vae = build_vae(FLUX_VAE if mid else TINY_VAE, seed=2)
    clip = build_clip(seed=3).to(torch.float16)
    t5 = build_t5(len(t5_tok), seed=4).to(torch.bfloat16)
    scheduler = FlowMatchEulerDiscreteScheduler(**SCHNELL_SCHEDULER)

    pipe = FluxPipeline(scheduler=scheduler, vae=vae, text_encoder=clip, tokenizer=clip_tok,
                        text_encoder_2=t5, tokenizer_2=t5_tok, transformer=transformer)
    pipe.save_pretrained(outdir, safe_serialization=True)
    # save_pretrained wrote the tokenizers again; put back the exact files made above
    shutil.rmtree(tok_dir)
    shutil.rmtree(tok2_dir)
    save_clip_tokenizer(tok_dir)
    save_t5_tokenizer(tok2_dir)

    if not mid:
        guided = build_transformer(dict(TINY_TRANSFORMER, guidance_embeds=True), seed=5)
        guided.save_pretrained(os.path.join(outdir, "transformer-guidance"), safe_serialization=True)
    return outdir


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outdir")
    ap.add_argument("--mid", action="store_true",
                    help="the mid-sized benchmark pipeline (width 768, 2 double + 4 single blocks, "
                         "the real-size VAE) instead of the tiny one")
    args = ap.parse_args(argv)
    build(args.outdir, mid=args.mid)
    print(f"wrote {args.outdir}")


if __name__ == "__main__":
    main(sys.argv[1:])
