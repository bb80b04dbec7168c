"""Check the draft before SGLang resolves the server arguments (so before any download or load).

Hook point by feature: `ServerArgs.resolve_once` where it exists (newer SGLang resolves lazily),
else `ServerArgs.__post_init__` (older SGLang resolves at construction).
"""

from .base import NotApplicable, import_or_skip, wrap_method


def apply() -> str:
    from sglang_eagle3_ext.pairing_check import check_speculative_args
    from sglang_eagle3_ext.errors import install_one_line_excepthook

    server_args = import_or_skip("sglang.srt.server_args")
    cls = server_args.ServerArgs
    hook = "resolve_once" if hasattr(cls, "resolve_once") else "__post_init__"
    if not hasattr(cls, hook):
        raise NotApplicable("ServerArgs has neither resolve_once nor __post_init__")

    def make(original):
        def checked(self, *args, **kwargs):
            if not getattr(self, "_resolution_finished", False):
                check_speculative_args(self)
            return original(self, *args, **kwargs)

        return checked

    wrap_method(cls, hook, make)
    install_one_line_excepthook()
    return f"draft checked before ServerArgs.{hook}"
