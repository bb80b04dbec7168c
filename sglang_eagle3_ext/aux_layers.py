"""The aux-layer rule: which target states an EAGLE-3 draft's aux layer ids name.

An EAGLE-3 draft reads K hidden states of its target (its `fc` takes K x hidden inputs). Its
config names them by `eagle_config.eagle_aux_hidden_state_layer_ids`; SGLang passes those ids to
the target's `set_eagle3_layers_to_capture` (None when the config has none, which means the
default below). Two conventions exist for what an id means:

* ``leaving`` (the default): id i is the residual stream LEAVING decoder layer i (after the
  layer, before the final norm); 0 <= i <= L-1, and L-1 is the final layer's output. SpecForge
  and SpecJAX train with it; SGLang's Llama / Qwen2 / Glm4Moe adapters read it.
* ``entering``: id i is the state ENTERING layer i (= leaving i-1); 0 <= i <= L, and L is the
  final layer's output. For drafts whose config lists the capture indices themselves.

Either way the target reads the state at the entry of layer ``index`` (``index`` = L: the input
of the final norm); `layers_to_read` turns ids into those indices. No ids means SpecForge's
default, the states leaving layers {1, L//2-1, L-4}, whatever the rule (it is what SGLang reads
then too). Capture (patches/eagle3_capture.py), the pairing check, the launch presets and
`python -m sglang_eagle3_ext check` all go through this module.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import Eagle3ConfigError

RULE_ENV = "SGLANG_EAGLE3_EXT_AUX_LAYER_RULE"  # parsed by settings.py
LEAVING, ENTERING = "leaving", "entering"
RULES = (LEAVING, ENTERING)
IDS_KEY = "eagle_config.eagle_aux_hidden_state_layer_ids"  # the only place SGLang reads them
DEFAULT_SOURCE = f"the default {{1, L//2-1, L-4}} (the draft's config names no {IDS_KEY})"


def rule_from_env() -> str:
    """The rule this process serves with (SGLANG_EAGLE3_EXT_AUX_LAYER_RULE, default leaving)."""
    from sglang_eagle3_ext.settings import settings

    return settings().aux_layer_rule


def default_ids(num_layers: int) -> list[int]:
    """SpecForge's default aux layer ids, in the leaving convention."""
    return [1, num_layers // 2 - 1, num_layers - 4]


def id_range(num_layers: int, rule: str) -> tuple[int, int]:
    """The smallest and largest id the rule allows for an L-layer target."""
    return 0, num_layers - 1 if rule == LEAVING else num_layers


def problems(ids, num_layers: int, rule: str, source: str = "the draft's config",
             fc_inputs: int | None = None, hidden_size: int | None = None) -> list[str]:
    """Every problem of these ids for this target, one message each (empty: they are fine).

    fc_inputs / hidden_size: the draft's fc.weight input width and the target's hidden size,
    when known; the fc must take one hidden-size slice per id."""
    fix = f"set {IDS_KEY} in the draft's config.json to the target layers it was trained on"
    if not isinstance(ids, (list, tuple)) or not ids:
        return [f"aux layer ids {ids!r} from {source} are not a list of layer ids: {fix}"]
    out = []
    lo, hi = id_range(num_layers, rule)
    bad = [i for i in ids if isinstance(i, bool) or not isinstance(i, int) or not lo <= i <= hi]
    if bad:
        out.append(f"aux layer ids {list(ids)} from {source} have {bad} out of range for a "
                   f"{num_layers}-layer target (rule '{rule}': {lo}..{hi}, {RULE_ENV}): {fix}")
    ints = [i for i in ids if i not in bad]
    repeated = sorted({i for i in ints if ints.count(i) > 1})
    if repeated:
        # The target captures each layer once; the draft's fc still expects one state per id.
        out.append(f"aux layer ids {list(ids)} from {source} repeat layer(s) {repeated} (the "
                   f"draft's fc expects {len(ids)} distinct states): {fix}")
    distinct = list(dict.fromkeys(ints))
    if distinct != sorted(distinct):
        out.append(f"aux layer ids {list(ids)} from {source} are not ascending (states are "
                   f"captured in layer order, so the draft's fc would see them permuted): {fix}")
    if fc_inputs is not None and hidden_size and fc_inputs != len(ids) * hidden_size:
        out.append(f"draft fc.weight takes {fc_inputs} inputs but {len(ids)} aux layer ids "
                   f"{list(ids)} from {source} x hidden {hidden_size} = {len(ids) * hidden_size} "
                   f"(the draft was trained on {fc_inputs / hidden_size:g} target layers): {fix}")
    return out


def layers_to_read(ids, num_layers: int, rule: str, source: str = "the draft's config") -> list[int]:
    """Ids -> indices of the layers at whose entry the target reads each state (L = the final
    layer's output, read at the final norm). Bad ids raise Eagle3ConfigError, one line each."""
    found = problems(ids, num_layers, rule, source)
    if found:
        raise Eagle3ConfigError("\n".join(found))
    return [i + 1 for i in ids] if rule == LEAVING else list(ids)


@dataclass(frozen=True)
class Resolved:
    """What a target reads for the ids SGLang passes (None = the config names none)."""
    ids: list       # the ids, or the default ones
    rule: str       # the rule they are read under (the default ids are always leaving)
    entering: list  # layers_to_read(ids, L, rule)
    default: bool   # True when the draft's config names no ids

    @property
    def leaving(self) -> list[int]:
        """The same states named as the layers they leave."""
        return [i - 1 for i in self.entering]


def resolve(ids, num_layers: int, rule: str) -> Resolved:
    """The layers the plugin reads for ids as SGLang passes them (None: the default)."""
    if ids is None:
        ids = default_ids(num_layers)
        return Resolved(ids, LEAVING, layers_to_read(ids, num_layers, LEAVING, DEFAULT_SOURCE), True)
    return Resolved(list(ids), rule, layers_to_read(ids, num_layers, rule), False)


def ids_in_draft_config(config: dict):
    """The ids SGLang hands the target for this draft config.json: eagle_config's, else None.

    A top-level `eagle_aux_hidden_state_layer_ids` (where vLLM / speculators and some training
    configs put them) is NOT passed on: SGLang only counts it for the fc width."""
    return (config.get("eagle_config") or {}).get("eagle_aux_hidden_state_layer_ids")


def top_level_ids(config: dict):
    """Ids at the top level of a draft config.json (not read by SGLang), or None."""
    return config.get("eagle_aux_hidden_state_layer_ids")


def rule_naming(ids, num_layers: int, entering: list[int]) -> str | None:
    """The rule under which ids name exactly these states (leaving first), or None."""
    for rule in RULES:
        if not problems(ids, num_layers, rule) and layers_to_read(ids, num_layers, rule) == entering:
            return rule
    return None


def upstream_difference(class_name: str, num_layers: int, ours: Resolved,
                        upstream: list[int] | None) -> str | None:
    """One line when the plugin reads other states than the installed SGLang's own adapter would
    for the same ids (upstream: the layers_to_capture it sets; it never reads index L, the final
    layer's output, there is no layer L to capture at); None when they agree or upstream has
    no adapter to compare with."""
    if upstream is None:
        return None
    upstream = [int(i) for i in upstream]
    read = [i for i in upstream if i < num_layers]
    if upstream == ours.entering and len(read) == len(upstream):
        return None
    ids = f"{ours.ids} (the default)" if ours.default else f"{ours.ids}"
    line = (f"{class_name}: aux layer ids {ids} are read as the states entering layers "
            f"{ours.entering} (rule '{ours.rule}'); SGLang's own {class_name} adapter would read "
            f"the states entering {read}")
    if len(read) < len(upstream):
        line += " and not the final layer's output"
    return line + ": the draft is served as trained only if it was trained on the former"
