"""The release smoke, run as a script under another SGLang release (tests/test_releases.py).

    PYTHONPATH=.sglang-X python tests/release_smoke.py MODELS_DIR OUT.json

Writes {sglang, compat, doctor, runs: {name: {output_ids, verify_steps, accept_length, generate_s,
engine_s, scheduler_patches}}}: `doctor --targets` (compat, nothing applied), the doctor's report,
then a baseline engine and EAGLE-3 engines at topk 1 and topk 4 on the tiny bigram target (plain,
penalized and min_tokens requests in one batch), one at a time in this process; scheduler_patches are the statuses the scheduler process reports, after
its model imports resolved the deferred patches. When a scheduler dies SGLang kills this process
(the test then shows the log); the test compares what it wrote.
"""

import json
import os
import sys
import time

NEW_TOKENS = 14
# name -> engine arguments; "draft": EAGLE-3 (topk 4 is a tree of 8 verified tokens). The baseline runs
# SGLang's synchronous scheduler: its overlap scheduler counts penalties a step late (patches/eagle_sample.py).
RUNS = {"base": dict(disable_overlap_schedule=True),
        "eagle3_topk1": dict(draft=True, speculative_eagle_topk=1, speculative_num_draft_tokens=4),
        "eagle3_topk4": dict(draft=True, speculative_eagle_topk=4, speculative_num_draft_tokens=8)}
# (prompt on the bigram target, sampling), one batch: each penalized request next to its plain twin.
# On 0.5.16 with eagle_sample.penalties disabled (upstream's relaxed penalties) all three penalized
# ones differ from the baseline at topk 1 and topk 4 (measured; docs/compatibility.md).
REQUESTS = [("cycle", {"ignore_eos": True}), ("cycle", {"ignore_eos": True, "frequency_penalty": 0.5}),
            ("cycle", {"ignore_eos": True, "repetition_penalty": 1.05}),
            ("near_eos", {}), ("near_eos", {"min_new_tokens": 10})]
PENALIZED = {1: 0, 2: 0, 4: 3}  # penalized request -> its plain twin


def main(models_dir: str, out_path: str) -> int:
    os.environ.setdefault("TRITON_INTERPRET", "1")
    os.environ.setdefault("SGLANG_EAGLE3_EXT_SELFCHECK", "off")  # probes cost ~1 min per engine
    import importlib.metadata as md

    from sglang_eagle3_ext import doctor
    from sglang_eagle3_ext.demo import run_engine

    result = {"sglang": md.version("sglang"), "compat": doctor.compat(), "doctor": doctor.report(),
              "runs": {}}
    # the bigram target and its agreeing draft: drafts are accepted (accept length ~2), so verify
    # really decides tokens, and the cycle prompt repeats at once (every penalty bites)
    from sglang_eagle3_ext.tiny_models import bigram_prompts

    target = os.path.join(models_dir, "qwen2-tiny-bigram")
    draft = os.path.join(models_dir, "qwen2-tiny-bigram-eagle3")
    ids = bigram_prompts(target)
    prompts = {"cycle": [7, 11, ids["cycle"][0]], "near_eos": ids["near_eos"]}
    result["requests"] = [(prompt, sampling) for prompt, sampling in REQUESTS]
    for name, spec in RUNS.items():
        spec = dict(spec)
        start = time.perf_counter()
        r = run_engine(target, draft if spec.pop("draft", False) else None,
                       prompts=[prompts[prompt] for prompt, _ in REQUESTS], max_new_tokens=NEW_TOKENS,
                       sampling=[sampling for _, sampling in REQUESTS], **spec)
        result["runs"][name] = {k: r[k] for k in ("output_ids", "verify_steps", "accept_length")}
        state = r["server_info"]["internal_states"][0].get("eagle3_ext", {})
        result["runs"][name]["scheduler_patches"] = state.get("patches")
        result["runs"][name].update(generate_s=round(r["wall_s"], 1),
                                    engine_s=round(time.perf_counter() - start, 1))
        with open(out_path, "w") as f:  # after every run: a later crash keeps what was proven
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
