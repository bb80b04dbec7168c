"""Check the draft before SGLang resolves the server arguments (so before any download or load).

Hook point by feature: `ServerArgs.resolve_once` where it exists (newer SGLang resolves lazily),
else `ServerArgs.__post_init__` (older SGLang resolves at construction).
"""

from .base import NotApplicable, Patch, Target

SERVER_ARGS = "sglang.srt.server_args:ServerArgs"


def _checked(original):
    def checked(self, *args, **kwargs):
        from sglang_eagle3_ext.draft_check import check_speculative_args

        if not getattr(self, "_resolution_finished", False):
            check_speculative_args(self)
        return original(self, *args, **kwargs)

    return checked


def hook_name(p) -> str:
    for name in ("resolve_once", "__post_init__"):
        if p.has(f"{SERVER_ARGS}.{name}"):
            return name
    raise NotApplicable("ServerArgs has neither resolve_once nor __post_init__")


def plan(p) -> str:
    from sglang_eagle3_ext.errors import one_line_excepthook

    name = hook_name(p)
    p.wrap(f"{SERVER_ARGS}.{name}", _checked)
    hook = one_line_excepthook(p.get("sys:excepthook"))
    if hook is not None:
        p.replace("sys:excepthook", hook)
    return f"draft checked before ServerArgs.{name}"


PATCH = Patch("draft_checks", "clear startup errors: missing / non-EAGLE-3 / ill-fitting draft", plan,
              targets=[Target(f"{SERVER_ARGS}.resolve_once", optional=True),
                       Target(f"{SERVER_ARGS}.__post_init__", optional=True),
                       Target("sys:excepthook", "set")])
