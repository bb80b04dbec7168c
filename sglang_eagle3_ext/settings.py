"""Every SGLANG_EAGLE3_EXT_* environment variable, declared once, parsed by one parser.

`settings()` returns a frozen `Settings` for the current environment. An invalid value raises
Eagle3ConfigError naming the variable, the value and what is allowed; the plugin parses once at
load in every process (launcher, engine, scheduler), so a typo stops startup instead of silently
falling back. Standard library only (the bootstrap imports the package in every process).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Optional

from .errors import Eagle3ConfigError

PREFIX = "SGLANG_EAGLE3_EXT_"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@dataclass(frozen=True)
class Setting:
    name: str  # without the prefix
    kind: str  # choice | bool | int | float | list | path
    default: object
    help: str
    choices: tuple = ()
    aliases: tuple = ()  # (alias, value) pairs accepted for a choice
    minimum: Optional[float] = None

    @property
    def env(self) -> str:
        return PREFIX + self.name

    def allowed(self) -> str:
        if self.kind == "choice":
            return "one of " + ", ".join(self.choices)
        if self.kind == "bool":
            return "on/off (1/0, true/false, yes/no)"
        if self.kind in ("int", "float"):
            return f"a{'n integer' if self.kind == 'int' else ' number'}" + (
                f" >= {self.minimum:g}" if self.minimum is not None else "")
        if self.kind == "list":
            return "a comma-separated list"
        return "a path"

    def parse(self, raw: Optional[str]):
        """The typed value of raw (None or blank = the default)."""
        if raw is None or not raw.strip():
            return self.default
        value = raw.strip()
        bad = Eagle3ConfigError(f"{self.env}={raw!r} is invalid: use {self.allowed()} "
                                f"(default {self.default!r}); {self.help}")
        if self.kind == "choice":
            value = dict(self.aliases).get(value.lower(), value.lower())
            if value not in self.choices:
                raise bad
            return value
        if self.kind == "bool":
            if value.lower() in _TRUE:
                return True
            if value.lower() in _FALSE:
                return False
            raise bad
        if self.kind in ("int", "float"):
            try:
                number = int(value) if self.kind == "int" else float(value)
            except ValueError:
                raise bad from None
            if self.minimum is not None and number < self.minimum:
                raise bad
            return number
        if self.kind == "list":
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value


DECLARED = (
    Setting("TREE_OPS", "choice", "auto",
            "EAGLE tree build/verify/sampling: auto = sgl-kernel on CUDA, else ours (Triton); "
            "triton; sglang-triton (SGLang's own Triton versions); torch (reference, slow); sgl-kernel",
            choices=("auto", "sgl-kernel", "triton", "sglang-triton", "torch")),
    Setting("AUX_LAYER_RULE", "choice", "leaving",
            "aux layer id i = the state leaving layer i (leaving, SpecForge) or entering it "
            "(entering, L = final output), for drafts trained with the other convention",
            choices=("leaving", "entering")),
    Setting("EXTRA_TARGETS", "list", (),
            "more Llama-style target classes to serve with EAGLE-3, module:Class,... "
            "(e.g. sglang.srt.models.granite:GraniteForCausalLM)"),
    Setting("DUMP_AUX", "path", None, "directory to save the aux states of the first target forwards"),
    Setting("DISABLE", "list", (), "patches to leave out, by the names `doctor` lists"),
    Setting("NO_BOOTSTRAP", "bool", False,
            "do not install the .pth import hook in this process (sgl.LLM then needs the entry point)"),
    Setting("TREE_ATTENTION", "bool", False,
            "target-verify attention on the Triton backend runs kernels/tree_attention.py; "
            "off until a GPU benchmark shows it wins"),
    Setting("FP8_MOE", "bool", False,
            "aligned block-FP8 MoE calls of at most FP8_MOE_MAX_TOKENS tokens run our Triton kernel "
            "(off: SGLang's; TP shards that are not a multiple of the block always run ours)"),
    Setting("FP8_MOE_MAX_TOKENS", "int", 256, "largest MoE call (tokens) FP8_MOE=on sends to our kernel",
            minimum=1),
    Setting("FP8_MOE_CONFIG_DIR", "path", None,
            "extra folder of tuned FP8 MoE tile configs (benchmarks/bench_fp8_moe.py --tune)"),
    Setting("SELFCHECK", "choice", "warn",
            "greedy acceptance probes after startup: warn, strict (a failure stops the server), off",
            choices=("warn", "strict", "off"),
            aliases=(("on", "warn"), ("1", "warn"), ("0", "off"), ("false", "off"), ("no", "off"))),
    Setting("SELFCHECK_MIN_ACCEPT_LENGTH", "float", 1.1, "self-check pass threshold (accept length)",
            minimum=1.0),
    Setting("SELFCHECK_TOKENS", "int", 32, "new tokens per self-check probe", minimum=2),
    Setting("GUARD_WINDOW", "int", 256, "live-guard window in request-steps; 0 turns the guard off",
            minimum=0),
    Setting("BREAK_EVEN", "float", None,
            "a measured break-even accept length for the live guard, replacing the estimate", minimum=0.0),
)
BY_NAME = {s.name.lower(): s for s in DECLARED}


@dataclass(frozen=True)
class Settings:
    tree_ops: str
    aux_layer_rule: str
    extra_targets: tuple
    dump_aux: Optional[str]
    disable: tuple
    no_bootstrap: bool
    tree_attention: bool
    fp8_moe: bool
    fp8_moe_max_tokens: int
    fp8_moe_config_dir: Optional[str]
    selfcheck: str
    selfcheck_min_accept_length: float
    selfcheck_tokens: int
    guard_window: int
    break_even: Optional[float]

    def as_env(self) -> dict:
        return {BY_NAME[f.name].env: getattr(self, f.name) for f in fields(self)}


assert [f.name for f in fields(Settings)] == list(BY_NAME), "Settings fields must match DECLARED"
_cache: dict = {}


def settings(environ=None) -> Settings:
    """The settings of this environment (parsed once per distinct set of values)."""
    environ = os.environ if environ is None else environ
    key = tuple(environ.get(s.env) for s in DECLARED)
    found = _cache.get(key)
    if found is None:
        found = Settings(**{name: s.parse(raw) for (name, s), raw in zip(BY_NAME.items(), key)})
        _cache.clear()  # tests flip variables; keep just the current environment
        _cache[key] = found
    return found


def unknown_variables(environ=None) -> list:
    """SGLANG_EAGLE3_EXT_* names set here that we do not know (a typo in a name)."""
    environ = os.environ if environ is None else environ
    known = {s.env for s in DECLARED}
    return sorted(k for k in environ if k.startswith(PREFIX) and k not in known)
