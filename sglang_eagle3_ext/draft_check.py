"""Checks on the draft named by the server arguments, run before SGLang resolves or loads anything.

Each failure raises Eagle3ConfigError with the problem and the fix in one line.
"""

from __future__ import annotations

import json
import logging
import os

from .errors import Eagle3ConfigError

logger = logging.getLogger("sglang_eagle3_ext")


def is_eagle3_architecture(arch: str) -> bool:
    # LlamaForCausalLMEagle3, Eagle3DeepseekV2ForCausalLM, ... (SGLang's EAGLE-3 draft classes)
    return "eagle3" in arch.lower()


def _looks_local(path: str) -> bool:
    """A hub id is 'org/name'; anything absolute, relative-dotted or ~ is meant as a local path."""
    return os.path.isabs(path) or path.startswith((".", "~")) or os.path.exists(path)


def read_local_config(path: str, role: str) -> dict | None:
    """config.json of a local model folder; None for a hub id (left to SGLang)."""
    if not _looks_local(path):
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
        from .pairing_check import validate_pair  # imports this module: keep it local

        validate_pair(args.model_path, str(draft))
