"""Every TP rank's plugin state, for `/get_server_info` -> internal_states[i].eagle3_ext.tp_ranks.

SGLang answers /get_server_info from one scheduler per DP group (at --tp 2, internal_states has
one entry: TP rank 0's), but every TP rank handles the same GetInternalStateReq: control requests
are broadcast to the whole TP group before they are dispatched. So each rank publishes its own
state under its global rank in torch.distributed's default store (the TCPStore SGLang's
process-group init created), and TP rank 0, the one whose answer reaches the client, reads its
peers' entries. A store, not a collective: a rank without the plugin never joins a collective and
the TP group's next broadcast would hang or mismatch; here its entry reads "no report" after
WAIT_S. Each entry carries a call count, so an entry left by an earlier request is not taken for
this one.
"""

from __future__ import annotations

import json
import time

KEY = "sglang_eagle3_ext/plugin_state/rank{}"
WAIT_S = 10.0  # a peer handles the same request at about the same time; only a missing one waits

_calls = [0]


def _tp_group():
    """(store, this rank's global rank, the TP group's global ranks, rank in group), or a reason."""
    try:
        import torch.distributed as dist
        from sglang.srt.distributed.parallel_state import get_tp_group
    except ImportError as e:
        return f"not importable ({e})"
    get_store = getattr(dist.distributed_c10d, "_get_default_store", None)
    if get_store is None or not dist.is_initialized():
        return "no torch.distributed default store"
    try:
        group = get_tp_group()
        return get_store(), dist.get_rank(), list(group.ranks), group.rank_in_group
    except Exception as e:  # TP group not initialised (e.g. a process without a model)
        return f"{type(e).__name__}: {e}"


def gather(state: dict) -> dict:
    """Publish this rank's state; on TP rank 0 return {tp_rank: state or status} for the group."""
    found = _tp_group()
    if isinstance(found, str):
        return {"status": f"unavailable: {found}"}
    store, rank, ranks, rank_in_group = found
    _calls[0] += 1
    call = _calls[0]
    store.set(KEY.format(rank), json.dumps(dict(state, rank=rank, call=call), default=str))
    if rank_in_group != 0:
        return {"status": "published", "tp_rank": rank_in_group}
    deadline = time.monotonic() + WAIT_S
    return {str(i): _read(store, KEY.format(r), call, deadline) for i, r in enumerate(ranks)}


def _read(store, key: str, call: int, deadline: float) -> dict:
    while True:
        if store.check([key]):
            entry = json.loads(store.get(key))
            if entry.get("call", 0) >= call:
                return entry
        if time.monotonic() > deadline:
            return {"status": f"no report within {WAIT_S:.0f} s (plugin not active in that rank?)"}
        time.sleep(0.02)
