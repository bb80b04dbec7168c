"""The reference output for exactness tests: transformers' greedy generate on a model folder."""


def hf_greedy(folder, prompts, new_tokens) -> list:
    """Token ids of exactly new_tokens greedy tokens after each prompt (EOS ignored)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    out = []
    for prompt in prompts:
        ids = tok(prompt)["input_ids"]
        with torch.no_grad():
            gen = model.generate(torch.tensor([ids]), max_new_tokens=new_tokens,
                                 min_new_tokens=new_tokens, do_sample=False)
        out.append(gen[0, len(ids):].tolist())
    return out
