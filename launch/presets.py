"""Launch presets: one JSON file per published draft, two variants each (low-latency, throughput).

A preset names the target and draft it was made for (architecture, shapes, the draft's aux layer
ids and the layer-id convention it was trained with) and the server arguments of each variant.
Every value names its source in `sources` (the model card, a measurement, the training code,
SGLang itself, or "project choice, not measured"); where a preset departs from its card,
docs/presets.md says why. Preset ids are '<file name>-<variant>', e.g. 'glm47-fp8-low-latency'.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from dataclasses import dataclass

from ..cpu_defaults import as_cli
from ..aux_layers import RULE_ENV, RULES

HERE = os.path.dirname(os.path.abspath(__file__))
SIMULATE_ENV = "SGLANG_SIMULATE_ACC_LEN"  # SGLang's own: forces the accept length (dummy weights)
SOURCE_KINDS = ("model card", "measured", "training code", "SGLang", "project choice", "unverified")


class PresetError(ValueError):
    pass


@dataclass
class Preset:
    id: str            # e.g. 'qwen25-7b-low-latency'
    data: dict         # the whole JSON file
    variant: str       # 'low-latency' or 'throughput'

    @property
    def target(self) -> dict:
        return self.data["target"]

    @property
    def draft(self) -> dict:
        return self.data["draft"]

    @property
    def batch_size(self) -> int:
        return self.data["variants"][self.variant]["batch_size"]

    @property
    def sources(self) -> dict:
        """Where each value comes from: server_args keys, variant names, draft.aux_layer_ids."""
        return self.data["sources"]

    @property
    def rule(self) -> str:
        return self.draft["aux_layer_rule"]

    def server_args(self, speculative: bool = True) -> dict:
        """Server arguments of this variant (ServerArgs field names); without the speculative
        ones for the baseline server."""
        args = dict(self.data["server_args"], **self.data["variants"][self.variant]["server_args"])
        if not speculative:
            args = {k: v for k, v in args.items() if not k.startswith("speculative_")}
        return args


def _check_file(path: str, data: dict) -> None:
    """Structure of one preset file; a broken file names itself and the missing key."""
    def need(obj, key, kind, where):
        if not isinstance(obj.get(key), kind):
            raise PresetError(f"preset {path}: {where}{key} missing or not {kind.__name__}")
        return obj[key]

    need(data, "name", str, "")
    for part in ("target", "draft", "server_args", "variants"):
        need(data, part, dict, "")
    for key, kind in (("model", str), ("architecture", str), ("hidden_size", int),
                      ("num_hidden_layers", int)):
        need(data["target"], key, kind, "target.")
    need(data["draft"], "model", str, "draft.")
    need(data["draft"], "aux_layer_ids", list, "draft.")
    if data["draft"].get("aux_layer_rule") not in RULES:
        raise PresetError(f"preset {path}: draft.aux_layer_rule must be one of {RULES}")
    for name, variant in data["variants"].items():
        need(variant, "batch_size", int, f"variants.{name}.")
        need(variant, "server_args", dict, f"variants.{name}.")
    sources = need(data, "sources", dict, "")
    sourced = [*data["server_args"], *data["variants"], "draft.aux_layer_ids"]
    sourced += ["published"] if "published" in data else []
    for key in sourced:
        value = sources.get(key)
        if not isinstance(value, str) or not value.startswith(SOURCE_KINDS):
            raise PresetError(f"preset {path}: sources.{key} missing or not one of "
                              f"{', '.join(SOURCE_KINDS)} (say where the value comes from)")


def load_presets(folder: str = HERE) -> dict[str, Preset]:
    """Every preset id -> Preset, from the JSON files in folder."""
    out = {}
    for fname in sorted(os.listdir(folder)):
        if not fname.endswith(".json"):
            continue
        path = os.path.join(folder, fname)
        with open(path) as f:
            data = json.load(f)
        _check_file(path, data)
        for variant in data["variants"]:
            pid = f"{data['name']}-{variant}"
            out[pid] = Preset(pid, data, variant)
    return out


def get_preset(preset_id: str) -> Preset:
    presets = load_presets()
    if preset_id not in presets:
        raise PresetError(f"unknown preset {preset_id!r}: one of {', '.join(presets)} "
                          f"(python -m sglang_eagle3_ext.launch --list)")
    return presets[preset_id]


def launch_command(preset: Preset, model_path: str | None = None, draft_path: str | None = None,
                   extra: list | tuple = (), baseline: bool = False,
                   simulate_accept_length: float | None = None) -> tuple[list, dict]:
    """(argv, environment additions) that start sglang.launch_server with this preset.

    Extra arguments come last, so they override the preset's (argparse keeps the last value)."""
    argv = [sys.executable, "-m", "sglang.launch_server",
            "--model-path", model_path or preset.target["model"]]
    env = {}
    if not baseline:
        argv += ["--speculative-algorithm", "EAGLE3",
                 "--speculative-draft-model-path", draft_path or preset.draft["model"]]
        env[RULE_ENV] = preset.rule
        if simulate_accept_length is not None:
            env[SIMULATE_ENV] = str(simulate_accept_length)
    argv += as_cli(preset.server_args(speculative=not baseline)) + ["--enable-metrics"] + list(extra)
    return argv, env


def format_command(argv: list, env: dict) -> str:
    return " ".join([f"{k}={shlex.quote(v)}" for k, v in env.items()] + [shlex.join(argv)])
