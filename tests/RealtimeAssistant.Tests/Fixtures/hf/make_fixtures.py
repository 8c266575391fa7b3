#!/usr/bin/env python3
"""Records Hugging Face transformers' own outputs on tiny random VLM checkpoints, as test fixtures.

Needs: transformers 4.50.0.dev0 (main at 523f6e743c74ecea90d0c37a172c9819b5691a19, the commit v4.50.0 was
branched from), torch, numpy, Pillow, jinja2, regex, num2words. Nothing is downloaded: every checkpoint,
tokenizer and image is built here, from fixed seeds.

How it was run here (no PyPI; Debian 12 packages; see README.md beside this file for the shims):
    apt-get install python3-torch python3-numpy python3-pil python3-regex python3-yaml python3-packaging \
        python3-filelock python3-tqdm python3-requests python3-jinja2 python3-num2words
    # transformers and huggingface_hub (0.29.0.dev0) source trees, a pure-python safetensors, and
    # torch-1.13 shims, all outside the repository, on PYTHONPATH:
    PYTHONPATH=/work/hfenv/src /usr/bin/python3 tests/RealtimeAssistant.Tests/Fixtures/hf/make_fixtures.py

Its outputs are committed; rerunning it rewrites them (the same bytes, given the same versions).
Each family folder is a checkpoint in the Hub layout (config.json, model.safetensors, preprocessor and
processor configs, tokenizer files, chat_template.json) plus expected.json and expected.safetensors.
"""
import argparse
import json
import math
import os
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import regex as re
import torch
from PIL import Image

import transformers
from transformers import (
    GPT2Tokenizer,
    Idefics3ForConditionalGeneration,
    Idefics3Processor,
    LlavaForConditionalGeneration,
    LlavaOnevisionForConditionalGeneration,
    LlavaOnevisionProcessor,
    LlavaProcessor,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2Tokenizer,
    Qwen2VLForConditionalGeneration,
    Qwen2VLProcessor,
    SmolVLMForConditionalGeneration,
    SmolVLMProcessor,
)
from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
CHAT_TEMPLATES = Path(os.environ.get("RA_CHAT_TEMPLATES", "/work/shared/chat-templates"))
GREEDY_STEPS = 8
LAST_ROWS = 3

QWEN_SPLIT = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
GPT2_SPLIT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# Text the tiny BPE merges are learnt from: the prompts and template texts used below.
MERGE_CORPUS = (
    "You are a helpful assistant. Describe the image. Describe this image in one word. What is in the video? "
    "system user assistant User Assistant USER ASSISTANT Frame from You are provided the following series of "
    "frames from a video. Now answer the question: two four video image the the the"
)


# ----------------------------------------------------------------------------------------------- images
def make_images(out: Path):
    """Fixed test images (PNG, committed): structure plus noise so resampling and tiling show."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(1234)

    def pattern(w, h, phase):
        y, x = np.mgrid[0:h, 0:w].astype(np.float64)
        r = 127.5 + 127.5 * np.sin((x + phase) / 3.1)
        g = 255.0 * (y / max(h - 1, 1))
        b = np.where(((x + phase) // 6 + y // 6) % 2 == 0, 230.0, 25.0)
        img = np.stack([r, g, b], -1) + rng.uniform(-20, 20, size=(h, w, 3))
        return Image.fromarray(np.clip(np.round(img), 0, 255).astype(np.uint8), "RGB")

    files = {
        "landscape": ("landscape_53x37.png", pattern(53, 37, 0)),
        "portrait": ("portrait_30x61.png", pattern(30, 61, 5)),
        "wide": ("wide_150x100.png", pattern(150, 100, 11)),
    }
    for name, (fname, img) in files.items():
        img.save(out / fname, optimize=False)
    frames = []
    for t in range(4):
        fname = f"frame{t}_40x30.png"
        pattern(40, 30, 4 * t).save(out / fname, optimize=False)
        frames.append(fname)
    load = lambda f: Image.open(out / f).convert("RGB")
    imgs = {k: load(v[0]) for k, v in files.items()}
    imgs["_files"] = {k: "images/" + v[0] for k, v in files.items()}
    video = [load(f) for f in frames]
    return imgs, video, ["images/" + f for f in frames]


# ---------------------------------------------------------------------------------------- tokenizers
def learn_merges(split_pattern, n_merges):
    """A tiny byte-level BPE learnt on MERGE_CORPUS: most frequent pair first, ties by the pair's text."""
    b2u = bytes_to_unicode()
    counts = {}
    for w in re.findall(split_pattern, MERGE_CORPUS):
        sym = tuple(b2u[b] for b in w.encode("utf-8"))
        counts[sym] = counts.get(sym, 0) + 1
    merges = []
    for _ in range(n_merges):
        pairs = {}
        for sym, c in counts.items():
            for a, b in zip(sym, sym[1:]):
                pairs[(a, b)] = pairs.get((a, b), 0) + c
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        new = {}
        for sym, c in counts.items():
            out, i = [], 0
            while i < len(sym):
                if i + 1 < len(sym) and (sym[i], sym[i + 1]) == best:
                    out.append(sym[i] + sym[i + 1])
                    i += 2
                else:
                    out.append(sym[i])
                    i += 1
            new[tuple(out)] = new.get(tuple(out), 0) + c
        counts = new
    vocab = {}
    for b in range(256):
        vocab[b2u[b]] = b
    for a, b in merges:
        if a + b not in vocab:
            vocab[a + b] = len(vocab)
    return vocab, merges


def write_bpe_files(folder: Path, vocab, merges):
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")


def tokenizer_json(vocab, merges, added, kind, bos_id=None):
    """tokenizer.json (the `tokenizers` format) describing the same tokenizer as the slow Python one."""
    if kind == "qwen2":
        normalizer = {"type": "NFC"}
        pre = {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": QWEN_SPLIT}, "behavior": "Isolated", "invert": False},
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
            ],
        }
        post = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    else:  # gpt2-style byte-level BPE (SmolLM2's tokenizer class is GPT2Tokenizer)
        normalizer = None
        pre = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
        post = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True}
            for t, i in added
        ],
        "normalizer": normalizer,
        "pre_tokenizer": pre,
        "post_processor": post,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
            "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
            "vocab": vocab, "merges": [f"{a} {b}" for a, b in merges],
        },
    }


def build_tokenizer(folder: Path, kind, specials, eos, pad, bos=None, unk=None):
    """Slow tokenizer (the reference) with `specials` appended as special tokens in list order (as the real
    checkpoints number theirs); writes its files and a tokenizer.json. Returns (tokenizer, {token: id})."""
    split = QWEN_SPLIT if kind == "qwen2" else GPT2_SPLIT
    vocab, merges = learn_merges(split, 40)
    tmp = folder / "_tok"
    tmp.mkdir(parents=True, exist_ok=True)
    write_bpe_files(tmp, vocab, merges)
    cls = Qwen2Tokenizer if kind == "qwen2" else GPT2Tokenizer
    first = specials[0]
    kw = dict(errors="replace", eos_token=first, pad_token=first, unk_token=first,
              bos_token=None if kind == "qwen2" else first)
    if kind == "qwen2":
        kw["clean_up_tokenization_spaces"] = False
    tok = cls(str(tmp / "vocab.json"), str(tmp / "merges.txt"), **kw)
    tok.add_special_tokens({"additional_special_tokens": specials[1:]})
    tok.eos_token, tok.pad_token, tok.unk_token = eos, pad, unk or first
    tok.bos_token = bos
    shutil.rmtree(tmp)
    ids = {t: tok.convert_tokens_to_ids(t) for t in specials}
    assert [ids[t] for t in specials] == list(range(len(vocab), len(vocab) + len(specials))), ids
    added = sorted(ids.items(), key=lambda kv: kv[1])
    tok.save_pretrained(str(folder))
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer_json(vocab, merges, added, kind), ensure_ascii=False, indent=1))
    return tok, ids


def encode_with_tokenizer_json(tj, text):
    """A minimal reading of our tokenizer.json (added tokens split out, NFC, split regex, byte-level map,
    BPE by merge rank), used only to check that file against the slow tokenizer."""
    import unicodedata
    b2u = bytes_to_unicode()
    added = {t["content"]: t["id"] for t in tj["added_tokens"]}
    vocab = tj["model"]["vocab"]
    ranks = {tuple(m.split(" ")): i for i, m in enumerate(tj["model"]["merges"])}
    pre = tj["pre_tokenizer"]
    pattern = pre["pretokenizers"][0]["pattern"]["Regex"] if pre["type"] == "Sequence" else GPT2_SPLIT
    ids = []
    parts = re.split("(" + "|".join(re.escape(t) for t in sorted(added, key=len, reverse=True)) + ")", text)
    for part in parts:
        if part in added:
            ids.append(added[part])
            continue
        if tj["normalizer"] and tj["normalizer"]["type"] == "NFC":
            part = unicodedata.normalize("NFC", part)
        for word in re.findall(pattern, part):
            sym = [b2u[b] for b in word.encode("utf-8")]
            while len(sym) > 1:
                pairs = [(ranks.get((a, b), 1 << 30), i) for i, (a, b) in enumerate(zip(sym, sym[1:]))]
                r, i = min(pairs)
                if r == 1 << 30:
                    break
                sym[i:i + 2] = [sym[i] + sym[i + 1]]
            ids.extend(vocab[x] for x in sym)
    return ids


def check_tokenizer_json(folder: Path, tok, texts):
    tj = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    for t in texts:
        want = tok(t, add_special_tokens=False)["input_ids"]
        got = encode_with_tokenizer_json(tj, t)
        assert got == want, (folder.name, t, got, want)


# ------------------------------------------------------------------------------------------ weights
def randomize(model, seed):
    """Seeded weights larger than HF's init (std 0.02) so that wrong maths shows in the logits:
    matrices N(0, 1/fan_in), embeddings N(0, 1), norm scales 1 + N(0, 0.1^2), biases N(0, 0.1^2),
    the LM head 3x wider so greedy choices have clear margins."""
    g = torch.Generator().manual_seed(seed)
    done = set()
    with torch.no_grad():
        for mname, module in sorted(model.named_modules(), key=lambda kv: kv[0]):
            is_norm = isinstance(module, torch.nn.LayerNorm) or "RMSNorm" in type(module).__name__
            for pname, p in sorted(module.named_parameters(recurse=False), key=lambda kv: kv[0]):
                if id(p) in done:
                    continue
                done.add(id(p))
                full = f"{mname}.{pname}" if mname else pname
                if is_norm and pname == "weight":
                    v = 1.0 + 0.1 * torch.randn(p.shape, generator=g)
                elif p.dim() == 1 and pname == "bias":
                    v = 0.1 * torch.randn(p.shape, generator=g)
                elif isinstance(module, torch.nn.Embedding) or p.dim() == 1:
                    v = torch.randn(p.shape, generator=g)
                else:
                    fan_in = p[0].numel()
                    std = 1.0 / math.sqrt(fan_in)
                    if full.endswith("lm_head.weight"):
                        std *= 3.0
                    v = std * torch.randn(p.shape, generator=g)
                p.copy_(v.to(p.dtype))


def build_checkpoint(folder: Path, model_cls, config_dict, seed, generation_config=None):
    """Writes the hub-style config.json, builds the model from it, randomizes, saves model.safetensors
    (transformers' save_pretrained, so tensor names and tied-weight dropping are HF's), then reloads the
    folder with from_pretrained and checks that no tensor is missing or unexpected."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config_dict, indent=2) + "\n")
    cfg = model_cls.config_class.from_pretrained(str(folder))
    cfg._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = model_cls(cfg).eval()
    randomize(model, seed)
    tmp = folder / "_save"
    model.save_pretrained(str(tmp), safe_serialization=True)
    shutil.move(str(tmp / "model.safetensors"), str(folder / "model.safetensors"))
    shutil.rmtree(tmp)
    (folder / "config.json").write_text(json.dumps(config_dict, indent=2) + "\n")  # keep the hub-style file
    if generation_config is not None:
        (folder / "generation_config.json").write_text(json.dumps(generation_config, indent=2) + "\n")
    loaded, info = model_cls.from_pretrained(
        str(folder), torch_dtype=torch.float32, attn_implementation="eager", output_loading_info=True)
    problems = {k: v for k, v in info.items() if v}
    if problems:
        raise SystemExit(f"{folder.name}: loading reported {problems}")
    sd_a, sd_b = model.state_dict(), loaded.state_dict()
    for k in sd_a:
        assert torch.equal(sd_a[k], sd_b[k]), k
    return loaded.eval()


def _dump(obj, indent=0):
    """JSON with objects indented and lists of scalars kept on one line."""
    pad, inner = " " * indent, " " * (indent + 1)
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f"{inner}{json.dumps(k)}: {_dump(v, indent + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list) and any(isinstance(x, (dict, list)) for x in obj):
        return "[\n" + ",\n".join(inner + _dump(x, indent + 1) for x in obj) + "\n" + pad + "]"
    return json.dumps(obj, ensure_ascii=False)


def write_json(path: Path, obj):
    path.write_text(_dump(obj) + "\n", encoding="utf-8")


def chat_template(name):
    return (CHAT_TEMPLATES / name).read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------------ running
def capture_decoder_input(layers_module):
    """Forward pre-hook on the first decoder layer: its input is the merged inputs_embeds (text and
    vision), the only place all families expose it the same way."""
    store = {}

    def hook(module, args):
        if "first" not in store:
            store["first"] = args[0].detach().clone()

    h = layers_module[0].register_forward_pre_hook(hook)
    return store, h


def run_case(model, layers, inputs, image_token_ids, tensors, case_name, extra_forward=None):
    """Full forward on the prompt, greedy decoding with the KV cache, and a full forward over prompt plus
    generated tokens (HF's own cache-vs-full agreement, recorded as a tolerance hint)."""
    ids = inputs["input_ids"]
    fw = {k: v for k, v in inputs.items() if k not in ("attention_mask",)}
    store, h = capture_decoder_input(layers)
    with torch.no_grad():
        out = model(**fw, attention_mask=inputs.get("attention_mask"))
    h.remove()
    logits = out.logits[0].float()
    embeds = store["first"][0]
    mask = torch.zeros(ids.shape[1], dtype=torch.bool)
    for t in image_token_ids:
        mask |= ids[0] == t
    with torch.no_grad():
        gen = model.generate(**inputs, max_new_tokens=GREEDY_STEPS, do_sample=False, num_beams=1,
                             output_logits=True, return_dict_in_generate=True, use_cache=True)
    new_tokens = gen.sequences[0, ids.shape[1]:].tolist()
    step_logits = torch.stack([l[0].float() for l in gen.logits], 0)
    margins = []
    for row in step_logits:
        top = torch.topk(row, 2).values
        margins.append(float(top[0] - top[1]))
    # HF's own check: one forward over prompt + generated tokens gives the same logits as the cached steps.
    full_ids = gen.sequences
    fw2 = dict(fw)
    fw2["input_ids"] = full_ids
    if extra_forward:
        fw2.update(extra_forward(full_ids))
    with torch.no_grad():
        full = model(**fw2).logits[0].float()
    n = ids.shape[1]
    cached_vs_full = float((full[n - 1:n - 1 + len(new_tokens)] - step_logits[:len(new_tokens)]).abs().max())
    tensors[f"{case_name}.logits_last"] = logits[-LAST_ROWS:].contiguous()
    tensors[f"{case_name}.step_logits"] = step_logits.contiguous()
    tensors[f"{case_name}.merged_image_embeds"] = embeds[mask].float().contiguous()
    return {
        "input_ids": ids[0].tolist(),
        "sequence_length": int(ids.shape[1]),
        "n_image_tokens": int(mask.sum()),
        "logits_last_rows": LAST_ROWS,
        "logits_last_first_values": [float(x) for x in logits[-1, :8]],
        "logits_last_argmax": int(logits[-1].argmax()),
        "greedy_tokens": new_tokens,
        "greedy_top2_margins": margins,
        "hf_cache_vs_full_max_abs_diff": cached_vs_full,
        "merged_image_embeds_shape": list(embeds[mask].shape),
    }


def put_pixels(tensors, case, inputs, keys, full):
    """Processor tensors: kept whole when `full` (one case a family, to keep folders small), otherwise
    described by sums, per-row sums (a row is a Qwen patch row, or one tile/frame), and first values."""
    meta = {}
    for k in keys:
        v = inputs.get(k)
        if not isinstance(v, torch.Tensor):
            continue
        meta[k] = {"shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", ""), "stored_whole": full}
        if full:
            tensors[f"{case}.{k}"] = v.contiguous()
        if v.is_floating_point() or v.numel() > 64:
            f = v.double()
            rows = f.reshape(f.shape[0], -1) if f.dim() == 2 else f.reshape(int(np.prod(f.shape[:-3])) if f.dim() > 3 else 1, -1)
            meta[k].update({"sum": float(f.sum()), "abs_sum": float(f.abs().sum()),
                            "row_sums": [float(x) for x in rows.sum(1)],
                            "first_values": [float(x) for x in f.flatten()[:6]]})
        else:
            meta[k]["values"] = v.tolist()
    return meta


def save_expected(folder: Path, expected, tensors):
    save_file({k: v.contiguous() for k, v in sorted(tensors.items())}, str(folder / "expected.safetensors"),
              metadata={"format": "pt"})
    write_json(folder / "expected.json", expected)


def header(family, note=""):
    return {
        "family": family,
        "produced_by": "make_fixtures.py",
        "transformers": transformers.__version__ + " (main @ 523f6e743c74ecea90d0c37a172c9819b5691a19)",
        "torch": torch.__version__,
        "attention": "eager",
        "dtype": "float32",
        "tensors_file": "expected.safetensors: <case>.<name>, float32 unless noted",
        "note": note,
    }


# -------------------------------------------------------------------------------------------- Qwen
QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                 "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]


def qwen_family(out: Path, imgs, video, video_files, *, v25=False, tied=False, name=None):
    name = name or ("qwen2_5_vl" if v25 else ("qwen2_vl_tied" if tied else "qwen2_vl"))
    folder = out / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    tok, ids = build_tokenizer(folder, "qwen2", QWEN_SPECIALS, eos="<|im_end|>", pad="<|endoftext|>",
                               unk=None)
    # The slow Qwen2Tokenizer's unk/eos defaults are <|endoftext|>; the Instruct checkpoints' eos is <|im_end|>.
    text = {
        "attention_dropout": 0.0,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
        "vision_token_id": ids["<|vision_pad|>"],
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "hidden_act": "silu",
        "hidden_size": 32,
        "initializer_range": 0.02,
        "intermediate_size": 64,
        "max_position_embeddings": 32768,
        "max_window_layers": 2,
        "model_type": "qwen2_5_vl" if v25 else "qwen2_vl",
        "num_attention_heads": 2,
        "num_hidden_layers": 2,
        "num_key_value_heads": 1,
        "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0,
        "sliding_window": 32768,
        "tie_word_embeddings": tied,
        "torch_dtype": "float32",
        "transformers_version": "4.50.0.dev0",
        "use_cache": True,
        "use_sliding_window": False,
    }
    if v25:
        vision = {"depth": 3, "hidden_act": "silu", "hidden_size": 16, "intermediate_size": 24, "num_heads": 2,
                  "in_chans": 3, "out_hidden_size": 32, "patch_size": 14, "spatial_merge_size": 2,
                  "spatial_patch_size": 14, "window_size": 56, "fullatt_block_indexes": [1],
                  "tokens_per_second": 2, "temporal_patch_size": 2}
    else:
        # Like the hub file: no vision hidden_act, so the class default (quick_gelu) applies.
        vision = {"depth": 2, "embed_dim": 16, "mlp_ratio": 2, "num_heads": 2, "in_chans": 3, "hidden_size": 32,
                  "patch_size": 14, "spatial_merge_size": 2, "spatial_patch_size": 14, "temporal_patch_size": 2}
    cfg = {"architectures": ["Qwen2_5_VLForConditionalGeneration" if v25 else "Qwen2VLForConditionalGeneration"]}
    cfg.update(text)
    cfg["vision_config"] = vision
    cfg["rope_scaling"] = {"type": "mrope", "mrope_section": [2, 3, 3]}
    cfg["vocab_size"] = 320
    cfg = dict(sorted(cfg.items(), key=lambda kv: (kv[0] != "architectures", kv[0])))
    gen_cfg = {"bos_token_id": ids["<|endoftext|>"], "pad_token_id": ids["<|endoftext|>"],
               "do_sample": False, "eos_token_id": [ids["<|im_end|>"], ids["<|endoftext|>"]],
               "transformers_version": "4.50.0.dev0"}
    model_cls = Qwen2_5_VLForConditionalGeneration if v25 else Qwen2VLForConditionalGeneration
    seed = {"qwen2_vl": 101, "qwen2_vl_tied": 102, "qwen2_5_vl": 103}[name]
    model = build_checkpoint(folder, model_cls, cfg, seed, gen_cfg)

    # Hub preprocessor_config.json keys, tiny max_pixels so both smart_resize clamps occur.
    pre = {"min_pixels": 3136, "max_pixels": 12544, "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2,
           "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
           "image_processor_type": "Qwen2VLImageProcessor",
           "processor_class": "Qwen2_5_VLProcessor" if v25 else "Qwen2VLProcessor"}
    write_json(folder / "preprocessor_config.json", pre)
    write_json(folder / "chat_template.json", {"chat_template": chat_template("qwen2-vl.jinja")})
    proc_cls = Qwen2_5_VLProcessor if v25 else Qwen2VLProcessor
    proc = proc_cls.from_pretrained(str(folder), use_fast=False)
    assert proc.image_processor.max_pixels == 12544 and proc.chat_template

    expected = header(name, "Qwen2.5-VL: vision window_size 56 = 2x2 merged tokens per window; "
                            "fullatt_block_indexes [1] of depth 3." if v25 else
                      ("tie_word_embeddings true (as Qwen2-VL-2B): no lm_head.weight in model.safetensors."
                       if tied else ""))
    expected["config_ids"] = {k: ids[k] for k in QWEN_SPECIALS}
    expected["cases"] = []
    tensors = {}
    layers = model.model.layers

    def msgs(kinds, prompt):
        content = [{"type": k} for k in kinds] + [{"type": "text", "text": prompt}]
        return [{"role": "user", "content": content}]

    cases = [("image_landscape", ["image"], [imgs["landscape"]], None, "Describe the image.")]
    if not tied:
        cases += [("image_wide", ["image"], [imgs["wide"]], None, "Describe this image in one word."),
                  ("two_images", ["image", "image"], [imgs["portrait"], imgs["landscape"]], None, "Describe the image."),
                  ("video", ["video"], None, [np.stack([np.asarray(f) for f in video])], "What is in the video?")]
    files = {"image_landscape": [imgs["_files"]["landscape"]], "image_wide": [imgs["_files"]["wide"]],
             "two_images": [imgs["_files"]["portrait"], imgs["_files"]["landscape"]], "video": video_files}
    for case, kinds, images, videos, prompt in cases:
        text = proc.apply_chat_template(msgs(kinds, prompt), tokenize=False, add_generation_prompt=True)
        kw = {}
        if images is not None:
            kw["images"] = images
        if videos is not None:
            kw["videos"] = videos
        inputs = proc(text=[text], return_tensors="pt", **kw)
        pix = put_pixels(tensors, case, inputs, ["pixel_values", "pixel_values_videos"], full=case == "image_landscape")
        rope_args = dict(input_ids=inputs["input_ids"], image_grid_thw=inputs.get("image_grid_thw"),
                         video_grid_thw=inputs.get("video_grid_thw"), attention_mask=inputs["attention_mask"])
        if v25:
            rope_args["second_per_grid_ts"] = inputs.get("second_per_grid_ts")
        pos, deltas = model.get_rope_index(**rope_args)
        # Vision tower output alone (patch rows in, merged tokens out), before it is placed in the sequence.
        with torch.no_grad():
            if images is not None:
                vis = model.visual(inputs["pixel_values"], grid_thw=inputs["image_grid_thw"])
            else:
                vis = model.visual(inputs["pixel_values_videos"], grid_thw=inputs["video_grid_thw"])
        tensors[f"{case}.vision_output"] = vis.float().contiguous()
        rec = {"name": case, "images": files[case] if images is not None else [],
               "video_frames": files[case] if videos is not None else [],
               "prompt_text": text, "processor_inputs": pix}
        for k in ("image_grid_thw", "video_grid_thw", "second_per_grid_ts"):
            if k in inputs and inputs[k] is not None:
                v = inputs[k]
                rec[k] = v.tolist() if isinstance(v, torch.Tensor) else list(v)
        rec["mrope_position_ids"] = pos[:, 0].tolist()  # [3 (t,h,w), seq]
        rec["rope_deltas"] = int(deltas.flatten()[0])
        rec["decode_positions_note"] = "decode step k (0-based) uses t=h=w=sequence_length+k+rope_deltas"
        rec.update(run_case(model, layers, inputs, [ids["<|image_pad|>"], ids["<|video_pad|>"]], tensors, case))
        rec["vision_output_shape"] = list(vis.shape)
        expected["cases"].append(rec)
    check_tokenizer_json(folder, tok, [c["prompt_text"] for c in expected["cases"]] + [c.get("expanded_text", "") for c in expected["cases"]] + [MERGE_CORPUS, "caf\u00e9 \u2014 123 ok?"])
    save_expected(folder, expected, tensors)
    return folder


# ---------------------------------------------------------------------------------- SmolVLM / Idefics3
def idefics_family(out: Path, imgs, video, video_files, *, smol: bool):
    name = "smolvlm" if smol else "idefics3"
    folder = out / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    # Tiles: SmolVLM 32 px (patch 8), longest edge 96 -> up to 3x3 tiles; Idefics3 28 px (patch 7), 56 -> 2x2.
    tile, patch, longest = (32, 8, 96) if smol else (28, 7, 56)
    scale = 2
    image_seq_len = ((tile // patch) ** 2) // (scale ** 2)
    max_rc = longest // tile
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<end_of_utterance>", "<fake_token_around_image>",
                "<image>", "<global-img>"]
    specials += [f"<row_{r}_col_{c}>" for r in range(1, max_rc + 1) for c in range(1, max_rc + 1)]
    tok, ids = build_tokenizer(folder, "gpt2", specials, eos="<end_of_utterance>", pad="<|endoftext|>",
                               bos="<|im_start|>", unk="<|endoftext|>")
    vocab = 384
    text_cfg = {
        "architectures": ["VLlama3ForCausalLM"],
        "head_dim": 16,
        "hidden_act": "silu",
        "hidden_size": 32,
        "initializer_range": 0.02,
        "intermediate_size": 64,
        "max_position_embeddings": 8192,
        "model_type": "llama",
        "num_attention_heads": 2,
        "num_hidden_layers": 2,
        "num_key_value_heads": 1,
        "pad_token_id": ids["<|endoftext|>"],
        "rms_norm_eps": 1e-05,
        "rope_scaling": None,
        "rope_theta": 100000 if smol else 500000.0,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "use_cache": True,
        "vocab_size": vocab,
    }
    if smol:  # keys the SmolVLM2 hub file carries; HF ignores them
        text_cfg.update({"is_llama_config": True, "neftune_noise_alpha": 0.0, "pixel_shuffle_factor": scale,
                         "qk_layer_norms": False, "rope_interleaved": False, "use_resampler": False})
        text_cfg = dict(sorted(text_cfg.items()))
    vision_cfg = {
        "hidden_size": 16,
        "image_size": tile,
        "intermediate_size": 32,
        "model_type": "smolvlm_vision" if smol else "idefics3_vision",
        "num_attention_heads": 2,
        "num_hidden_layers": 2,
        "patch_size": patch,
    }
    if smol:
        vision_cfg.update({"max_image_size": {"longest_edge": tile}, "size": {"longest_edge": longest},
                           "tie_word_embeddings": False, "use_base_siglip": False})
    cfg = {
        "architectures": ["SmolVLMForConditionalGeneration" if smol else "Idefics3ForConditionalGeneration"],
        "image_token_id": ids["<image>"],
        "model_type": name,
        "pad_token_id": ids["<|endoftext|>"],
        "scale_factor": scale,
        "text_config": text_cfg,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "transformers_version": "4.50.0.dev0",
        "use_cache": True,
        "vision_config": vision_cfg,
        "vocab_size": vocab,
    }
    gen_cfg = {"bos_token_id": ids["<|im_start|>"], "eos_token_id": [ids["<end_of_utterance>"]],
               "pad_token_id": ids["<|endoftext|>"], "transformers_version": "4.50.0.dev0"}
    model_cls = SmolVLMForConditionalGeneration if smol else Idefics3ForConditionalGeneration
    model = build_checkpoint(folder, model_cls, cfg, 201 if smol else 202, gen_cfg)

    pre = {
        "do_convert_rgb": True,
        "do_image_splitting": True,
        "do_normalize": True,
        "do_pad": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": [0.5, 0.5, 0.5],
        "image_processor_type": "SmolVLMImageProcessor" if smol else "Idefics3ImageProcessor",
        "image_std": [0.5, 0.5, 0.5],
        "max_image_size": {"longest_edge": tile},
        "processor_class": "SmolVLMProcessor" if smol else "Idefics3Processor",
        "resample": 1,
        "rescale_factor": 0.00392156862745098,
        "size": {"longest_edge": longest},
    }
    if smol:
        # Video frames go at video_size; equal to max_image_size, as in SmolVLM2, so frames are not split.
        pre["video_sampling"] = {"fps": 1, "max_frames": 64, "video_size": {"longest_edge": tile}}
    write_json(folder / "preprocessor_config.json", pre)
    write_json(folder / "processor_config.json", {"image_seq_len": image_seq_len,
                                                  "processor_class": pre["processor_class"]})
    template = chat_template("smolvlm2.jinja" if smol else "idefics3.jinja")
    write_json(folder / "chat_template.json", {"chat_template": template})
    proc = (SmolVLMProcessor if smol else Idefics3Processor).from_pretrained(str(folder), use_fast=False)
    assert proc.image_seq_len == image_seq_len

    expected = header(name, f"tiles {tile} px (patch {patch}), size.longest_edge {longest}, scale_factor {scale}, "
                            f"image_seq_len {image_seq_len}; BOS is in the chat template text, the tokenizer adds none.")
    expected["config_ids"] = {k: ids[k] for k in specials}
    expected["image_seq_len"] = image_seq_len
    expected["cases"] = []
    tensors = {}
    layers = model.model.text_model.layers

    def conv(kind, prompt):
        return [{"role": "user", "content": [{"type": kind}, {"type": "text", "text": prompt}]}]

    cases = [("image_landscape", imgs["landscape"], imgs["_files"]["landscape"], "Describe the image."),
             ("image_portrait", imgs["portrait"], imgs["_files"]["portrait"], "Describe this image in one word.")]
    for case, img, fname, prompt in cases:
        text = proc.apply_chat_template(conv("image", prompt), tokenize=False, add_generation_prompt=True)
        inputs = proc(text=[text], images=[[img]], return_tensors="pt")
        rows_cols = proc.image_processor(images=[[img]], return_row_col_info=True, return_tensors="pt")
        pix = put_pixels(tensors, case, inputs, ["pixel_values", "pixel_attention_mask"], full=case == "image_landscape")
        rec = {"name": case, "images": [fname], "prompt_text": text, "processor_inputs": pix,
               "rows": rows_cols["rows"][0], "cols": rows_cols["cols"][0],
               "expanded_text": tok.decode(inputs["input_ids"][0], spaces_between_special_tokens=False)}
        rec.update(run_case(model, layers, inputs, [ids["<image>"]], tensors, case))
        expected["cases"].append(rec)

    if smol:
        # The video path up to the frames: apply_chat_template would load the file and sample frames with
        # smolvlm_sample_indices_fn; here the four committed frames stand for the sampled ones, and HF's own
        # _process_messages_for_chat_template writes the frame/timestamp text.
        from transformers.models.smolvlm.video_processing_smolvlm import smolvlm_sample_indices_fn
        meta = types.SimpleNamespace(total_num_frames=120, fps=30.0, duration=4.0, video_backend="none",
                                     frames_indices=[0, 30, 60, 90])
        sampled = smolvlm_sample_indices_fn(meta, max_frames=4, target_fps=1, skip_secs=1).tolist()
        sampled_64 = smolvlm_sample_indices_fn(
            types.SimpleNamespace(total_num_frames=900, fps=30.0, duration=30.0), max_frames=64, target_fps=1,
            skip_secs=1).tolist()
        frames = np.stack([np.asarray(f) for f in video])
        conversation = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What is in the video?"}]}]
        expanded = proc._process_messages_for_chat_template([conversation], batch_images=[],
                                                            batch_videos=[[frames]], batch_video_metadata=[[meta]])
        text = proc.apply_chat_template(expanded[0], tokenize=False, add_generation_prompt=True)
        inputs = proc(text=[text], videos=[[Image.fromarray(f) for f in frames]], return_tensors="pt")
        pix = put_pixels(tensors, "video", inputs, ["pixel_values", "pixel_attention_mask"], full=False)
        rec = {"name": "video", "video_frames": video_files,
               "video_metadata": {"total_num_frames": 120, "fps": 30.0, "duration": 4.0,
                                  "frames_indices": [0, 30, 60, 90]},
               "sample_indices_fn_examples": [
                   {"total_num_frames": 120, "fps": 30.0, "duration": 4.0, "max_frames": 4, "target_fps": 1,
                    "skip_secs": 1, "indices": sampled},
                   {"total_num_frames": 900, "fps": 30.0, "duration": 30.0, "max_frames": 64, "target_fps": 1,
                    "skip_secs": 1, "indices": sampled_64}],
               "prompt_text": text, "processor_inputs": pix,
               "expanded_text": tok.decode(inputs["input_ids"][0], spaces_between_special_tokens=False)}
        rec.update(run_case(model, layers, inputs, [ids["<image>"]], tensors, "video"))
        expected["cases"].append(rec)
    check_tokenizer_json(folder, tok, [c["prompt_text"] for c in expected["cases"]] + [c.get("expanded_text", "") for c in expected["cases"]] + [MERGE_CORPUS, "caf\u00e9 \u2014 123 ok?"])
    save_expected(folder, expected, tensors)
    return folder


# ------------------------------------------------------------------------------------ LLaVA-OneVision
def onevision_family(out: Path, imgs, video, video_files):
    name = "llava_onevision"
    folder = out / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]
    tok, ids = build_tokenizer(folder, "qwen2", specials, eos="<|im_end|>", pad="<|endoftext|>")
    tile, patch = 16, 4
    pinpoints = [[tile * a, tile * b] for a in range(1, 7) for b in range(1, 7)]
    cfg = {
        "architectures": ["LlavaOnevisionForConditionalGeneration"],
        "image_grid_pinpoints": pinpoints,
        "image_token_index": ids["<image>"],
        "model_type": "llava_onevision",
        "projector_hidden_act": "gelu",
        "text_config": {
            "_name_or_path": "Qwen/Qwen2-0.5B-Instruct",
            "architectures": ["Qwen2ForCausalLM"],
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "hidden_size": 32,
            "intermediate_size": 64,
            "max_position_embeddings": 32768,
            "max_window_layers": 2,
            "model_type": "qwen2",
            "num_attention_heads": 2,
            "num_hidden_layers": 2,
            "num_key_value_heads": 1,
            "rope_theta": 1000000.0,
            "sliding_window": 32768,
            "tie_word_embeddings": False,
            "torch_dtype": "float32",
            "use_sliding_window": False,
            "vocab_size": 320,
        },
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "transformers_version": "4.50.0.dev0",
        "use_image_newline_parameter": True,
        "video_token_index": ids["<video>"],
        "vision_aspect_ratio": "anyres_max_9",
        "vision_config": {
            "hidden_size": 16,
            "image_size": tile,
            "intermediate_size": 32,
            "model_type": "siglip_vision_model",
            "num_attention_heads": 2,
            "num_hidden_layers": 2,
            "patch_size": patch,
            "vision_use_head": False,
        },
        "vision_feature_layer": -1,
        "vision_feature_select_strategy": "full",
    }
    gen_cfg = {"bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
               "pad_token_id": ids["<|endoftext|>"], "transformers_version": "4.50.0.dev0"}
    model = build_checkpoint(folder, LlavaOnevisionForConditionalGeneration, cfg, 301, gen_cfg)
    pre = {
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_pad": True,
        "do_rescale": True,
        "do_resize": True,
        "image_grid_pinpoints": pinpoints,
        "image_mean": [0.5, 0.5, 0.5],
        "image_processor_type": "LlavaOnevisionImageProcessor",
        "image_std": [0.5, 0.5, 0.5],
        "processor_class": "LlavaOnevisionProcessor",
        "resample": 3,
        "rescale_factor": 0.00392156862745098,
        "size": {"height": tile, "width": tile},
    }
    write_json(folder / "preprocessor_config.json", pre)
    num_image_tokens = (tile // patch) ** 2
    write_json(folder / "processor_config.json", {"image_token": "<image>", "num_image_tokens": num_image_tokens,
                                                  "processor_class": "LlavaOnevisionProcessor",
                                                  "video_token": "<video>",
                                                  "vision_feature_select_strategy": "full"})
    write_json(folder / "chat_template.json", {"chat_template": chat_template("llava-onevision.jinja")})
    proc = LlavaOnevisionProcessor.from_pretrained(str(folder), use_fast=False)
    assert proc.num_image_tokens == num_image_tokens

    expected = header(name, f"SigLIP tile {tile} px, patch {patch} (4x4 patches = {num_image_tokens} tokens per tile); "
                            f"pinpoints {tile}*a x {tile}*b for a,b in 1..6; video frames pooled 4x4 -> 2x2 "
                            "plus one image_newline per video.")
    expected["config_ids"] = {k: ids[k] for k in specials}
    expected["image_grid_pinpoints"] = pinpoints
    expected["cases"] = []
    tensors = {}
    layers = model.language_model.model.layers

    def conv(kind, prompt):
        return [{"role": "user", "content": [{"type": kind}, {"type": "text", "text": prompt}]}]

    # landscape and wide are big enough for the anyres_max_9 downscale; the 40x30 frame is not, and its
    # unpadding removes one padded column of patches at each side.
    cases = [("image_landscape", imgs["landscape"], imgs["_files"]["landscape"], "Describe the image."),
             ("image_wide", imgs["wide"], imgs["_files"]["wide"], "Describe this image in one word."),
             ("image_frame0", video[0], video_files[0], "Describe the image.")]
    for case, img, fname, prompt in cases:
        text = proc.apply_chat_template(conv("image", prompt), tokenize=False, add_generation_prompt=True)
        inputs = proc(text=[text], images=[img], return_tensors="pt")
        pix = put_pixels(tensors, case, inputs, ["pixel_values", "image_sizes"], full=case == "image_landscape")
        from transformers.image_processing_utils import select_best_resolution
        best = select_best_resolution([img.height, img.width], pinpoints)
        rec = {"name": case, "images": [fname], "prompt_text": text, "processor_inputs": pix,
               "image_sizes": inputs["image_sizes"].tolist(), "best_resolution_hw": list(best),
               "n_tiles_including_base": int(inputs["pixel_values"].shape[1])}
        rec.update(run_case(model, layers, inputs, [ids["<image>"]], tensors, case))
        expected["cases"].append(rec)

    frames = np.stack([np.asarray(f) for f in video])
    text = proc.apply_chat_template(conv("video", "What is in the video?"), tokenize=False, add_generation_prompt=True)
    inputs = proc(text=[text], videos=[frames], return_tensors="pt")
    pix = put_pixels(tensors, "video", inputs, ["pixel_values_videos"], full=True)
    rec = {"name": "video", "video_frames": video_files, "prompt_text": text, "processor_inputs": pix}
    rec.update(run_case(model, layers, inputs, [ids["<video>"]], tensors, "video"))
    expected["cases"].append(rec)
    check_tokenizer_json(folder, tok, [c["prompt_text"] for c in expected["cases"]] + [c.get("expanded_text", "") for c in expected["cases"]] + [MERGE_CORPUS, "caf\u00e9 \u2014 123 ok?"])
    save_expected(folder, expected, tensors)
    return folder


# ---------------------------------------------------------------------------------------------- LLaVA
def llava_family(out: Path, imgs, *, tower: str):
    name = f"llava_{tower}"
    folder = out / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    clip = tower == "clip"
    if clip:  # llava-1.5 style: CLIP (CLS, layer -2, 'default' drops CLS) + LLaMA
        specials = ["<unk>", "<s>", "</s>", "<image>", "<pad>"]
        tok, ids = build_tokenizer(folder, "gpt2", specials, eos="</s>", pad="<pad>", bos="<s>", unk="<unk>")
        text_cfg = {"architectures": ["LlamaForCausalLM"], "hidden_size": 32, "intermediate_size": 64,
                    "max_position_embeddings": 4096, "model_type": "llama", "num_attention_heads": 2,
                    "num_hidden_layers": 2, "num_key_value_heads": 2, "rms_norm_eps": 1e-05,
                    "rope_theta": 10000.0, "torch_dtype": "float32", "vocab_size": 320,
                    "pad_token_id": ids["<pad>"]}
        vision_cfg = {"hidden_size": 16, "image_size": 32, "intermediate_size": 32, "model_type": "clip_vision_model",
                      "num_attention_heads": 2, "num_hidden_layers": 3, "patch_size": 8, "projection_dim": 16,
                      "vocab_size": 320}
        strategy, layer = "default", -2
        template = "llava-1.5.jinja"
        pre = {"crop_size": {"height": 32, "width": 32}, "do_center_crop": True, "do_convert_rgb": True,
               "do_normalize": True, "do_rescale": True, "do_resize": True,
               "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_processor_type": "CLIPImageProcessor",
               "image_std": [0.26862954, 0.26130258, 0.27577711], "processor_class": "LlavaProcessor",
               "resample": 3, "rescale_factor": 0.00392156862745098, "size": {"shortest_edge": 32}}
    else:  # llava-interleave-qwen style: SigLIP (no CLS, last layer, 'full') + Qwen2
        specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>"]
        tok, ids = build_tokenizer(folder, "qwen2", specials, eos="<|im_end|>", pad="<|endoftext|>")
        text_cfg = {"architectures": ["Qwen2ForCausalLM"], "hidden_size": 32, "intermediate_size": 64,
                    "max_position_embeddings": 32768, "model_type": "qwen2", "num_attention_heads": 2,
                    "num_hidden_layers": 2, "num_key_value_heads": 1, "rms_norm_eps": 1e-06,
                    "rope_theta": 1000000.0, "torch_dtype": "float32", "vocab_size": 320,
                    "tie_word_embeddings": False}
        vision_cfg = {"hidden_size": 16, "image_size": 32, "intermediate_size": 32,
                      "model_type": "siglip_vision_model", "num_attention_heads": 2, "num_hidden_layers": 2,
                      "patch_size": 8, "vision_use_head": False}
        strategy, layer = "full", -1
        template = "llava-onevision.jinja"  # same im_start/im_end shape as llava-interleave's
        pre = {"do_convert_rgb": True, "do_normalize": True, "do_rescale": True, "do_resize": True,
               "image_mean": [0.5, 0.5, 0.5], "image_processor_type": "SiglipImageProcessor",
               "image_std": [0.5, 0.5, 0.5], "processor_class": "LlavaProcessor", "resample": 3,
               "rescale_factor": 0.00392156862745098, "size": {"height": 32, "width": 32}}
    cfg = {"architectures": ["LlavaForConditionalGeneration"], "ignore_index": -100,
           "image_token_index": ids["<image>"], "model_type": "llava", "projector_hidden_act": "gelu",
           "text_config": text_cfg, "tie_word_embeddings": False, "torch_dtype": "float32",
           "transformers_version": "4.50.0.dev0", "vision_config": vision_cfg,
           "vision_feature_layer": layer, "vision_feature_select_strategy": strategy}
    gen_cfg = {"eos_token_id": ids["</s>" if clip else "<|im_end|>"],
               "pad_token_id": ids["<pad>" if clip else "<|endoftext|>"], "transformers_version": "4.50.0.dev0"}
    model = build_checkpoint(folder, LlavaForConditionalGeneration, cfg, 401 if clip else 402, gen_cfg)
    write_json(folder / "preprocessor_config.json", pre)
    write_json(folder / "processor_config.json", {"num_additional_image_tokens": 1 if clip else 0,
                                                  "patch_size": 8, "processor_class": "LlavaProcessor",
                                                  "vision_feature_select_strategy": strategy})
    write_json(folder / "chat_template.json", {"chat_template": chat_template(template)})
    proc = LlavaProcessor.from_pretrained(str(folder), use_fast=False)

    expected = header(name, ("CLIP 32 px, patch 8: 16 patches + CLS; layer -2; 'default' drops CLS -> 16 tokens. "
                             "Tokenizer: byte-level BPE stand-in (not SentencePiece)." if clip else
                             "SigLIP 32 px, patch 8: 16 patches; last layer; 'full' -> 16 tokens."))
    expected["config_ids"] = {k: ids[k] for k in specials}
    expected["cases"] = []
    tensors = {}
    layers = model.language_model.model.layers
    conv = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe the image."}]}]
    for case, img, fname in [("image_landscape", imgs["landscape"], imgs["_files"]["landscape"]),
                             ("image_portrait", imgs["portrait"], imgs["_files"]["portrait"])]:
        text = proc.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
        inputs = proc(text=[text], images=[img], return_tensors="pt")
        pix = put_pixels(tensors, case, inputs, ["pixel_values"], full=True)
        rec = {"name": case, "images": [fname], "prompt_text": text, "processor_inputs": pix}
        rec.update(run_case(model, layers, inputs, [ids["<image>"]], tensors, case))
        expected["cases"].append(rec)
    check_tokenizer_json(folder, tok, [c["prompt_text"] for c in expected["cases"]] + [c.get("expanded_text", "") for c in expected["cases"]] + [MERGE_CORPUS, "caf\u00e9 \u2014 123 ok?"])
    save_expected(folder, expected, tensors)
    return folder


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--only", nargs="*", help="family folder names to (re)build")
    args = ap.parse_args()
    torch.set_num_threads(1)  # thread count changes float summation order; one thread is reproducible
    imgs, video, video_files = make_images(args.out / "images")
    builders = {
        "qwen2_vl": lambda: qwen_family(args.out, imgs, video, video_files),
        "qwen2_vl_tied": lambda: qwen_family(args.out, imgs, video, video_files, tied=True),
        "qwen2_5_vl": lambda: qwen_family(args.out, imgs, video, video_files, v25=True),
        "smolvlm": lambda: idefics_family(args.out, imgs, video, video_files, smol=True),
        "idefics3": lambda: idefics_family(args.out, imgs, video, video_files, smol=False),
        "llava_onevision": lambda: onevision_family(args.out, imgs, video, video_files),
        "llava_clip": lambda: llava_family(args.out, imgs, tower="clip"),
        "llava_siglip": lambda: llava_family(args.out, imgs, tower="siglip"),
    }
    for name, build in builders.items():
        if args.only and name not in args.only:
            continue
        folder = build()
        size = sum(p.stat().st_size for p in folder.iterdir())
        print(f"{name}: {size / 1024:.0f} KiB in {folder}")


if __name__ == "__main__":
    main()
