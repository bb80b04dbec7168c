"""Tiny random models built locally: Qwen2 targets, their tokenizer, and EAGLE-3 drafts for them.

Used by the demo and the tests; nothing is downloaded.

* target ``random``: every weight random; for exactness tests (SGLang vs transformers, lossless).
* target ``bigram``: attention outputs zeroed (o_proj = 0), so the greedy next token depends on the
  current token only: next = g(token). Its last layer is an identity too (down_proj = 0), so the
  state leaving layer L-2 already is the final pre-norm state.
* draft ``agreeing`` (for a bigram target): fc selects that aux state, its own layer adds nothing
  (zero o_proj / down_proj), it shares the target's norm and lm_head, and its d2t maps draft id y to
  g(y). EAGLE-3 drafts at position t from (h_t, token t+1); h_t encodes token t, so the draft's
  argmax is g(token t) = token t+1 and d2t turns it into g(token t+1): the target's next token.
  Its first proposal is therefore always right (later chain steps repeat it): accept length ~2.
* draft ``random``: random weights; accept length near 1.
"""

from __future__ import annotations

import json
import os

# A small built-in corpus: the tokenizer is trained on it, the demo prompts come from it.
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Speculative decoding drafts several tokens and the target model verifies them at once.",
    "A draft model proposes, the target model disposes.",
    "def add(a, b):\n    return a + b\n",
    "for i in range(10):\n    print(i * i)\n",
    "The capital of France is Paris. The capital of Italy is Rome.",
    "One plus one is two. Two plus two is four. Three plus three is six.",
    "Summarize: the meeting moved to Tuesday because the room was booked.",
    "User: hello there! Assistant: hello, how can I help you today?",
    "Large language models generate text one token at a time.",
    "EAGLE-3 reads hidden states from three layers of the target model.",
    "Serving engineers care about latency, throughput and correctness.",
]

DEMO_PROMPTS = [
    "The capital of France is",
    "def add(a, b):",
    "Speculative decoding drafts",
    "One plus one is",
]

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

# Two heads: on a CPU the Triton interpreter runs one program per (request, head) of the extend
# kernel (prefill, target verify), most of an EAGLE-3 step there. Two KV heads still shard at --tp 2;
# GQA is in tiny_archs' targets.
TARGET_SHAPE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                    num_attention_heads=2, num_key_value_heads=2)
# The shape the weights are drawn for: these targets had 4 heads (2 KV heads) before, and drawing
# as then keeps every weight outside k_proj/v_proj, so the bigram map g stays the one the tests'
# prompts and cases were chosen on (bigram_prompts, tests/logprob_answers.py).
DRAW_SHAPE = dict(TARGET_SHAPE, num_attention_heads=4, num_key_value_heads=2)


def build_tokenizer(out_dir: str, vocab_size: int = 320):
    """Train a byte-level BPE on CORPUS and save it as a HF fast tokenizer with a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 4, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>",
                                   pad_token="<|endoftext|>", bos_token=None)
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out_dir)
    return fast


def _write_config(out_dir: str, config: dict) -> None:
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)


def build_qwen2_target(out_dir: str, kind: str = "random", seed: int = 0,
                       num_hidden_layers: int = 4) -> dict:
    """A Qwen2ForCausalLM (float32) of the given kind with its tokenizer; returns its config dict."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    os.makedirs(out_dir, exist_ok=True)
    tokenizer = build_tokenizer(out_dir)
    common = dict(vocab_size=len(tokenizer), max_position_embeddings=1024,
                  rope_theta=10000.0, tie_word_embeddings=False, torch_dtype="float32",
                  eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.eos_token_id)
    config = Qwen2Config(**common, **dict(TARGET_SHAPE, num_hidden_layers=num_hidden_layers))
    drawn = _drawn_weights(Qwen2Config(**common, **dict(DRAW_SHAPE, num_hidden_layers=num_hidden_layers)), seed)
    model = Qwen2ForCausalLM(config).float()
    with torch.no_grad():
        for name, p in model.named_parameters():
            w = drawn.get(name)
            if w is not None and w.shape == p.shape:
                p.copy_(w)
            elif p.dim() > 1:  # k_proj, v_proj; their biases keep HF's init (zeros) as the rest do
                p.normal_(0.0, 0.2)
        if kind == "bigram":
            for layer in model.model.layers:
                layer.self_attn.o_proj.weight.zero_()
            model.model.layers[-1].mlp.down_proj.weight.zero_()
        elif kind != "random":
            raise ValueError(f"unknown target kind {kind!r}: use 'random' or 'bigram'")
    model.save_pretrained(out_dir, safe_serialization=True)
    return json.load(open(os.path.join(out_dir, "config.json")))


def _drawn_weights(config, seed: int) -> dict:
    """The random weights of a Qwen2 of this config: HF's init, then every matrix redrawn larger
    (sharper, more varied logits)."""
    import torch
    from transformers import Qwen2ForCausalLM

    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).float()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2) if p.dim() > 1 else None
    return dict(model.named_parameters())


def build_eagle3_draft(out_dir: str, target_dir: str, kind: str = "agreeing", seed: int = 1,
                       aux_layer_ids: list[int] | None = None) -> dict:
    """An EAGLE-3 draft (LlamaForCausalLMEagle3, one decoder layer) for the target at target_dir."""
    import torch
    from safetensors.torch import load_file, save_file

    os.makedirs(out_dir, exist_ok=True)
    tcfg = json.load(open(os.path.join(target_dir, "config.json")))
    hidden, vocab, n_layers = tcfg["hidden_size"], tcfg["vocab_size"], tcfg["num_hidden_layers"]
    ids = aux_layer_ids if aux_layer_ids is not None else [0, n_layers // 2 - 1, n_layers - 2]
    heads, kv_heads = tcfg["num_attention_heads"], tcfg["num_key_value_heads"]
    head_dim = hidden // heads
    inter = tcfg["intermediate_size"]
    config = {
        "architectures": ["LlamaForCausalLMEagle3"], "model_type": "llama",
        "hidden_size": hidden, "intermediate_size": inter, "num_attention_heads": heads,
        "num_key_value_heads": kv_heads, "head_dim": head_dim, "num_hidden_layers": 1,
        "vocab_size": vocab, "draft_vocab_size": vocab, "max_position_embeddings": 1024,
        "rms_norm_eps": tcfg.get("rms_norm_eps", 1e-6), "rope_theta": 10000.0,
        "hidden_act": "silu", "tie_word_embeddings": False, "torch_dtype": "float32",
        "eagle_config": {"eagle_aux_hidden_state_layer_ids": ids},
    }
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape):
        return torch.randn(*shape, generator=g) * 0.2

    target = load_file(os.path.join(target_dir, "model.safetensors"))
    w = {
        "midlayer.self_attn.q_proj.weight": rnd(heads * head_dim, 2 * hidden),
        "midlayer.self_attn.k_proj.weight": rnd(kv_heads * head_dim, 2 * hidden),
        "midlayer.self_attn.v_proj.weight": rnd(kv_heads * head_dim, 2 * hidden),
        "midlayer.self_attn.o_proj.weight": rnd(hidden, heads * head_dim),
        "midlayer.mlp.gate_proj.weight": rnd(inter, hidden),
        "midlayer.mlp.up_proj.weight": rnd(inter, hidden),
        "midlayer.mlp.down_proj.weight": rnd(hidden, inter),
        "midlayer.input_layernorm.weight": torch.ones(hidden),
        "midlayer.hidden_norm.weight": torch.ones(hidden),
        "midlayer.post_attention_layernorm.weight": torch.ones(hidden),
        "fc.weight": rnd(hidden, len(ids) * hidden),
        "norm.weight": torch.ones(hidden),
        "lm_head.weight": rnd(vocab, hidden),
        "embed_tokens.weight": target["model.embed_tokens.weight"].clone(),
        # Offsets: target_id = draft_id + d2t[draft_id]; identity mapping here.
        "d2t": torch.zeros(vocab, dtype=torch.int64),
        "t2d": torch.ones(vocab, dtype=torch.bool),
    }
    if kind == "agreeing":
        g = bigram_next_tokens(target_dir)
        w["d2t"] = g - torch.arange(vocab)
        w["midlayer.self_attn.o_proj.weight"].zero_()
        w["midlayer.mlp.down_proj.weight"].zero_()
        fc = torch.zeros(hidden, len(ids) * hidden)
        last = ids.index(n_layers - 2)  # the aux state that equals the final hidden state
        fc[:, last * hidden:(last + 1) * hidden] = torch.eye(hidden)
        w["fc.weight"] = fc
        w["norm.weight"] = target["model.norm.weight"].clone()
        w["lm_head.weight"] = target["lm_head.weight"].clone()
    elif kind != "random":
        raise ValueError(f"unknown draft kind {kind!r}: use 'agreeing' or 'random'")
    save_file({k: v.contiguous() for k, v in w.items()}, os.path.join(out_dir, "model.safetensors"))
    _write_config(out_dir, config)
    return config


def bigram_next_tokens(target_dir: str):
    """g(y) = the target's greedy next token after token y; checks it ignores the context."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(target_dir, torch_dtype=torch.float32).eval()
    vocab = model.config.vocab_size
    with torch.no_grad():
        g = model(torch.arange(vocab).view(vocab, 1)).logits[:, -1].argmax(-1)
        ctx = torch.stack([torch.roll(torch.arange(vocab), 1), torch.arange(vocab)], dim=1)
        if not torch.equal(model(ctx).logits[:, -1].argmax(-1), g):
            raise ValueError(f"{target_dir} is not a bigram target: an agreeing draft needs one")
    return g


def bigram_prompts(target_dir: str):
    """Token-id prompts chosen on the bigram map g where sampling parameters bite, or None when
    this target has none: near_eos ends 3 tokens before EOS on g's orbit (min_tokens bites), cycle
    is on a cycle of g that avoids EOS (the output repeats at once: every penalty bites; the top-2
    logit margins are ~0.4, so even repetition_penalty 1.05 does), stop_token is on near_eos's orbit."""
    g = bigram_next_tokens(target_dir).tolist()
    eos = json.load(open(os.path.join(target_dir, "config.json")))["eos_token_id"]

    def orbit(start, steps):
        out = [start]
        for _ in range(steps):
            out.append(g[out[-1]])
        return out

    near = [s for s in range(len(g)) if orbit(s, 4)[-1] == eos and eos not in orbit(s, 3)]
    cycle = [s for s in range(len(g)) if g[s] != s and eos not in orbit(s, 8) and orbit(s, 8).count(s) > 1]
    if not near or not cycle:
        return None
    return dict(near_eos=[7, 11, near[0]], cycle=orbit(cycle[0], 3), stop_token=orbit(near[0], 2)[-1])


def build_demo_models(root: str) -> dict:
    """Both targets and their drafts under root; returns their paths.

    The random draft fits either target (same shapes and tokenizer)."""
    paths = {"target": os.path.join(root, "qwen2-tiny"),
             "random_draft": os.path.join(root, "qwen2-tiny-eagle3-random"),
             "bigram_target": os.path.join(root, "qwen2-tiny-bigram"),
             "agreeing_draft": os.path.join(root, "qwen2-tiny-bigram-eagle3")}
    build_qwen2_target(paths["target"], kind="random")
    build_eagle3_draft(paths["random_draft"], paths["target"], kind="random")
    build_qwen2_target(paths["bigram_target"], kind="bigram")
    build_eagle3_draft(paths["agreeing_draft"], paths["bigram_target"], kind="agreeing")
    return paths
