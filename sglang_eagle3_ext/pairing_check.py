"""Does this EAGLE-3 draft fit this target? The one home of that question.

* `check_speculative_args` (at startup, before SGLang resolves or loads anything): EAGLE3 has a
  draft, the draft is an EAGLE-3 model (an EAGLE-3 draft launched as EAGLE is upgraded), and the
  pair's files fit (below).
* `check_pair` / `validate_pair`: the draft against the target from config, tokenizer and
  safetensors headers only. Mismatches otherwise fail late (a shape error deep in a matmul after
  minutes of loading) or silently (wrong token ids, accept length ~1). Nothing is loaded into
  torch; the only tensor read is d2t, which is small.

`check_pair` returns one CheckResult per check (one per problem when a check finds several);
`validate_pair` raises Eagle3ConfigError with one failure per line, the first self-explanatory.
What the aux layer ids mean is sglang_eagle3_ext.aux_layers; the `check` command
(check_cli.py) and the launch presets (launch/validate.py) call these.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass

from . import aux_layers
from .errors import Eagle3ConfigError

logger = logging.getLogger("sglang_eagle3_ext")

FIX_DRAFT = "use an EAGLE-3 draft trained for this target"


@dataclass
class CheckResult:
    name: str
    status: str  # "ok", "fail" or "skipped"
    detail: str

    def as_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------- model folders

def looks_local(path: str) -> bool:
    """A hub id is 'org/name'; anything absolute, relative-dotted or ~ is meant as a local path."""
    return os.path.isabs(path) or path.startswith((".", "~")) or os.path.exists(path)


def read_local_config(path: str, role: str) -> dict | None:
    """config.json of a local model folder; None for a hub id (left to SGLang)."""
    if not looks_local(path):
        return None
    path = os.path.expanduser(path)
    if not os.path.isdir(path):
        raise Eagle3ConfigError(
            f"{role} path {path!r} does not exist or is not a directory: "
            f"pass the folder that holds the {role}'s config.json and weights")
    cfg_path = os.path.join(path, "config.json")
    try:
        with open(cfg_path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise Eagle3ConfigError(f"{role} folder {path!r} has no config.json: "
                                f"point to a Hugging Face-style model folder") from None
    except (OSError, ValueError) as e:
        raise Eagle3ConfigError(f"{role} config {cfg_path!r} cannot be read ({e}): "
                                f"fix its permissions or JSON") from None


def config_value(cfg: dict, key: str):
    """A config key, also from text_config (multimodal targets nest the language model's)."""
    if key in cfg:
        return cfg[key]
    return (cfg.get("text_config") or {}).get(key)


def _read_json(path: str) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------- 1. hidden size

def check_hidden(tcfg: dict, dcfg: dict) -> list[CheckResult]:
    t = config_value(tcfg, "hidden_size")
    key = "target_hidden_size" if dcfg.get("target_hidden_size") is not None else "hidden_size"
    d = dcfg.get(key)
    if t is None or d is None:
        who = "target" if t is None else "draft"
        return [CheckResult("hidden_size", "fail",
                            f"{who} config.json has no hidden_size: point to a complete "
                            f"Hugging Face config.json")]
    if t != d:
        return [CheckResult("hidden_size", "fail",
                            f"draft {key} {d} != target hidden_size {t} (the draft's fc reads "
                            f"the target's hidden states): {FIX_DRAFT}")]
    return [CheckResult("hidden_size", "ok", f"draft {key} {d} == target hidden_size {t}")]


# ---------------------------------------------------------------- 2. vocab

def check_vocab(tcfg: dict, dcfg: dict) -> list[CheckResult]:
    t, d, dv = config_value(tcfg, "vocab_size"), dcfg.get("vocab_size"), dcfg.get("draft_vocab_size")
    if t is None or d is None:
        who = "target" if t is None else "draft"
        return [CheckResult("vocab", "fail", f"{who} config.json has no vocab_size: point to a "
                                             f"complete Hugging Face config.json")]
    out = []
    if d != t:
        out.append(CheckResult("vocab", "fail",
                               f"draft vocab_size {d} != target vocab_size {t} (the draft shares "
                               f"the target's embedding and token ids): {FIX_DRAFT}"))
    if dv is not None and dv > t:
        out.append(CheckResult("vocab", "fail",
                               f"draft draft_vocab_size {dv} > target vocab_size {t} (a draft "
                               f"vocabulary is a subset of the target's): {FIX_DRAFT}, or fix "
                               f"draft_vocab_size in the draft's config.json"))
    return out or [CheckResult("vocab", "ok", f"vocab_size {t}, draft_vocab_size {dv or d}")]


# ---------------------------------------------------------------- weights headers

def _weight_files(folder: str) -> tuple[dict | None, str]:
    """{tensor name: safetensors file} for the folder's weights, or None and why not."""
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(index):
        data = _read_json(index)
        if not data or "weight_map" not in data:
            return None, f"{index} cannot be read"
        files = {k: os.path.join(folder, v) for k, v in data["weight_map"].items()}
        missing = sorted({os.path.basename(f) for f in files.values() if not os.path.exists(f)})
        if missing:
            raise OSError(f"shard(s) {missing} named in {index} are missing")
        return files, ""
    single = os.path.join(folder, "model.safetensors")
    if os.path.exists(single):
        from safetensors import safe_open

        with safe_open(single, framework="numpy") as f:
            return {k: single for k in f.keys()}, ""
    if any(n.endswith(".bin") for n in os.listdir(folder)):
        return None, "weights are pytorch_model.bin, not safetensors"
    return None, "no model.safetensors or model.safetensors.index.json"


def _find(files: dict, short: str) -> str | None:
    """Tensor name 'd2t' or '<prefix>.d2t' (SGLang matches these by substring)."""
    for name in files:
        if name == short or name.endswith("." + short):
            return name
    return None


def _header(files: dict, name: str) -> tuple[list[int], str]:
    from safetensors import safe_open

    with safe_open(files[name], framework="numpy") as f:
        s = f.get_slice(name)
        return list(s.get_shape()), s.get_dtype()


def _is_int(dtype: str) -> bool:
    return dtype.upper().startswith(("I", "U"))  # I8..I64, U8..U64 in safetensors' naming


# ---------------------------------------------------------------- 3. d2t / t2d

def check_d2t(tcfg: dict, dcfg: dict, files: dict | None, why: str) -> list[CheckResult]:
    vocab = config_value(tcfg, "vocab_size")
    dv = dcfg.get("draft_vocab_size") or dcfg.get("vocab_size")
    if files is None:
        return [CheckResult("d2t", "skipped", f"{why}; d2t not checked (save the draft as "
                                              f"safetensors to check it)")]
    if not isinstance(vocab, int) or not isinstance(dv, int) or dv > vocab:
        return [CheckResult("d2t", "skipped", "vocab sizes unknown or inconsistent (see vocab)")]
    out = []
    d2t = _find(files, "d2t")
    if d2t is None:
        if dv < vocab:
            out.append(CheckResult(
                "d2t", "fail",
                f"draft has no d2t tensor but draft_vocab_size {dv} < vocab_size {vocab}, so "
                f"draft ids cannot be mapped to target ids: use the draft's full checkpoint "
                f"(it saves d2t next to the weights)"))
    else:
        shape, dtype = _header(files, d2t)
        if shape != [dv]:
            out.append(CheckResult(
                "d2t", "fail",
                f"draft d2t has shape {shape}, expected [{dv}] (draft_vocab_size): fix "
                f"draft_vocab_size in the draft's config.json or regenerate d2t"))
        elif not _is_int(dtype):
            out.append(CheckResult(
                "d2t", "fail",
                f"draft d2t has dtype {dtype}, expected an integer dtype (it holds offsets "
                f"target_id = draft_id + d2t[draft_id]): re-save d2t as int64"))
        else:
            import numpy as np
            from safetensors import safe_open

            with safe_open(files[d2t], framework="numpy") as f:
                offsets = f.get_tensor(d2t).astype(np.int64)
            target_ids = np.arange(dv, dtype=np.int64) + offsets
            bad = np.nonzero((target_ids < 0) | (target_ids >= vocab))[0]
            if len(bad):
                i = int(bad[0])
                out.append(CheckResult(
                    "d2t", "fail",
                    f"draft d2t maps {len(bad)} draft ids outside the target vocabulary "
                    f"[0, {vocab}) (draft id {i} -> {int(target_ids[i])}; target_id = draft_id + "
                    f"d2t[draft_id]): regenerate d2t as offsets for this target, or {FIX_DRAFT}"))
    t2d = _find(files, "t2d")
    if t2d is not None:
        shape, dtype = _header(files, t2d)
        if shape != [vocab] or dtype.upper() != "BOOL":
            out.append(CheckResult(
                "d2t", "fail",
                f"draft t2d has shape {shape} dtype {dtype}, expected [{vocab}] BOOL (one flag "
                f"per target token): regenerate t2d for this target, or {FIX_DRAFT}"))
    if out:
        return out
    if d2t is None:
        return [CheckResult("d2t", "ok", f"no d2t; none needed (draft_vocab_size {dv} == "
                                         f"vocab_size {vocab})")]
    what = "d2t and t2d" if t2d else "d2t"
    return [CheckResult("d2t", "ok", f"{what} fit draft_vocab_size {dv}, target vocab {vocab}")]


# ---------------------------------------------------------------- 4. aux layer ids

def check_aux_ids(tcfg: dict, dcfg: dict, files: dict | None, rule: str) -> list[CheckResult]:
    """The ids SGLang will pass (or the default), read under `rule`: valid for this target and
    the draft's fc; ids the draft names where SGLang does not read them must agree."""
    L = config_value(tcfg, "num_hidden_layers")
    if not isinstance(L, int):
        return [CheckResult("aux_layer_ids", "fail", "target config.json has no "
                            "num_hidden_layers: point to a complete Hugging Face config.json")]
    ids = aux_layers.ids_in_draft_config(dcfg)
    how, source = rule, aux_layers.IDS_KEY
    if ids is None:
        ids, how, source = aux_layers.default_ids(L), aux_layers.LEAVING, aux_layers.DEFAULT_SOURCE
    width = ", fc not checked"
    fc_inputs = None
    fc = _find(files, "fc.weight") if files else None
    h = dcfg.get("target_hidden_size") or dcfg.get("hidden_size")
    # A hidden-size mismatch also breaks the fc width; the hidden_size check reports that one.
    if fc is not None and isinstance(h, int) and h == config_value(tcfg, "hidden_size"):
        fc_inputs = _header(files, fc)[0][-1]
        width = f", fc input {fc_inputs}"
    found = aux_layers.problems(ids, L, how, source, fc_inputs, h)
    out = [CheckResult("aux_layer_ids", "fail", m) for m in found]
    n_cfg = dcfg.get("num_aux_hidden_states")
    if isinstance(ids, list) and n_cfg is not None and n_cfg != len(ids):
        out.append(CheckResult("aux_layer_ids", "fail",
                               f"draft num_aux_hidden_states {n_cfg} != {len(ids)} aux layer ids "
                               f"{ids} from {source}: make them agree in the draft's config.json"))
    if out:
        return out
    entering = aux_layers.layers_to_read(ids, L, how, source)
    note = ""
    top = aux_layers.top_level_ids(dcfg)
    if top is not None:  # SGLang does not read these; they must name the states it does read
        named_as = aux_layers.rule_naming(top, L, entering)
        if named_as is None:
            return [CheckResult(
                "aux_layer_ids", "fail",
                f"the draft's config.json names aux layer ids {top} at its top level, where "
                f"SGLang does not read them; it reads {ids} from {source} (rule '{how}'): the "
                f"states entering layers {entering}, which {top} name under neither rule: move "
                f"the ids the draft was trained on into {aux_layers.IDS_KEY} (and set "
                f"{aux_layers.RULE_ENV}=entering if they are entering ids)")]
        note = f"; top-level ids {top} (not read by SGLang) name the same states as {named_as} ids"
    return [CheckResult("aux_layer_ids", "ok",
                        f"{ids} from {source} (rule '{how}'): the states entering layers "
                        f"{entering} of the {L}-layer target{width}{note}")]


# ---------------------------------------------------------------- 5. tokenizer

SPECIALS = ("eos", "bos", "pad")


def _tokenizer_info(folder: str) -> dict | None:
    """{'len': tokenizer length, 'eos'/'bos'/'pad': id} from tokenizer files; None if none."""
    tok = _read_json(os.path.join(folder, "tokenizer.json"))
    if tok is None:
        return None
    vocab = (tok.get("model") or {}).get("vocab") or {}
    # BPE/WordPiece: {token: id}; Unigram: [[piece, score], ...] with id = position.
    ids = dict(vocab) if isinstance(vocab, dict) else {p[0]: i for i, p in enumerate(vocab)}
    for t in tok.get("added_tokens") or []:
        ids[t["content"]] = t["id"]
    info = {"len": len(set(ids.values()))}
    # Token strings: tokenizer_config.json, then special_tokens_map.json; ids: generation_config.
    cfgs = [_read_json(os.path.join(folder, n)) or {} for n in
            ("tokenizer_config.json", "special_tokens_map.json")]
    gen = _read_json(os.path.join(folder, "generation_config.json")) or {}
    for s in SPECIALS:
        value = next((c[f"{s}_token"] for c in cfgs if c.get(f"{s}_token") is not None), None)
        if isinstance(value, dict):
            value = value.get("content")
        if value is not None and value in ids:
            info[s] = ids[value]
        elif gen.get(f"{s}_token_id") is not None:
            info[s] = gen[f"{s}_token_id"]
    return info


def check_tokenizer(target_dir: str, draft_dir: str) -> list[CheckResult]:
    t, d = _tokenizer_info(target_dir), _tokenizer_info(draft_dir)
    if t is None or d is None:
        who = "target" if t is None else "draft"
        return [CheckResult("tokenizer", "skipped", f"{who} folder has no tokenizer.json "
                            f"(SGLang uses the target's tokenizer)")]
    fix = (f"{FIX_DRAFT}'s tokenizer, or remove the draft folder's tokenizer files if they are "
           f"stale copies")
    out = []
    if t["len"] != d["len"]:
        out.append(CheckResult("tokenizer", "fail", f"draft tokenizer has {d['len']} tokens, "
                                                    f"target tokenizer {t['len']}: {fix}"))
    for s in SPECIALS:
        if s in t and s in d and t[s] != d[s]:
            out.append(CheckResult("tokenizer", "fail", f"draft {s} token id {d[s]} != target "
                                                        f"{s} token id {t[s]}: {fix}"))
    same = ", ".join(f"{s} {t[s]}" for s in SPECIALS if s in t and s in d)
    return out or [CheckResult("tokenizer", "ok", f"{t['len']} tokens" + (f"; {same}" if same else ""))]


# ---------------------------------------------------------------- entry points

def check_pair(target_dir: str, draft_dir: str, rule: str | None = None) -> list[CheckResult]:
    """Every check of the draft against the target; local folders only. rule: the aux-layer
    rule the server will run with (default: this process's, aux_layers.rule_from_env)."""
    target_dir, draft_dir = str(target_dir), str(draft_dir)
    for role, path in (("target", target_dir), ("draft", draft_dir)):
        if not looks_local(path):
            return [CheckResult("pairing", "skipped", f"{role} {path!r} is not a local folder "
                                                      f"(hub id): pairing left to SGLang")]
    try:
        tcfg = read_local_config(target_dir, "target")
        dcfg = read_local_config(draft_dir, "draft")
        rule = rule or aux_layers.rule_from_env()
    except Eagle3ConfigError as e:
        return [CheckResult("configs", "fail", str(e))]
    target_dir, draft_dir = os.path.expanduser(target_dir), os.path.expanduser(draft_dir)
    weights = []
    try:
        files, why = _weight_files(draft_dir)
    except Exception as e:  # missing shard or corrupt header: SGLang's load would fail too
        files, why = None, "draft weights unreadable"
        weights = [CheckResult("weights", "fail", f"draft weights cannot be read ({e}): "
                                                  f"re-download or re-save the draft's weights")]
    return (weights + check_hidden(tcfg, dcfg) + check_vocab(tcfg, dcfg)
            + check_d2t(tcfg, dcfg, files, why)
            + check_aux_ids(tcfg, dcfg, files, rule) + check_tokenizer(target_dir, draft_dir))


def validate_pair(target_dir: str, draft_dir: str, rule: str | None = None) -> list[CheckResult]:
    """check_pair, raising Eagle3ConfigError with one failure per line if any check fails."""
    results = check_pair(target_dir, draft_dir, rule)
    failed = [r.detail for r in results if r.status == "fail"]
    if failed:
        raise Eagle3ConfigError("\n".join(failed))
    return results


# ---------------------------------------------------------------- at startup

def is_eagle3_architecture(arch: str) -> bool:
    # LlamaForCausalLMEagle3, Eagle3DeepseekV2ForCausalLM, ... (SGLang's EAGLE-3 draft classes)
    return "eagle3" in arch.lower()


def check_speculative_args(args) -> None:
    """Validate (and where unambiguous, fix) the speculative fields of a ServerArgs in place."""
    algo = (getattr(args, "speculative_algorithm", None) or "").upper()
    draft = getattr(args, "speculative_draft_model_path", None)
    if algo not in ("EAGLE", "EAGLE3"):
        return
    if not draft:
        if algo == "EAGLE3":
            raise Eagle3ConfigError("--speculative-algorithm EAGLE3 needs a draft: "
                                    "add --speculative-draft-model-path <EAGLE-3 draft folder>")
        return
    config = read_local_config(str(draft), "draft")
    if config is None:
        return
    archs = config.get("architectures") or []
    eagle3 = any(is_eagle3_architecture(a) for a in archs)
    if algo == "EAGLE3" and not eagle3:
        raise Eagle3ConfigError(
            f"draft {draft!r} is not an EAGLE-3 model (architectures={archs}): "
            f"use an EAGLE-3 draft (e.g. LlamaForCausalLMEagle3), or --speculative-algorithm EAGLE "
            f"for an EAGLE-1/2 draft")
    if algo == "EAGLE" and eagle3:
        args.speculative_algorithm = "EAGLE3"
        logger.warning("sglang-eagle3-ext: draft %s is an EAGLE-3 model (%s); "
                       "--speculative-algorithm EAGLE upgraded to EAGLE3", draft, archs[0])
    if eagle3:  # draft against target: sizes, d2t, layer ids, tokenizer (skips hub ids)
        validate_pair(args.model_path, str(draft))
