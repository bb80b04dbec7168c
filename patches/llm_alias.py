"""`sglang.LLM` as an alias of the offline Engine (upstream only has `sglang.Engine`).

Resolved lazily through a module `__getattr__`, so `import sglang` stays as cheap as before and
`sgl.LLM` is a real class (isinstance works).
"""

import sys

from .base import NotApplicable


def _lazy_getattr(previous):
    def __getattr__(name):
        if name == "LLM":
            from sglang_eagle3_ext.llm import LLM

            return LLM
        if previous is not None:
            return previous(name)
        raise AttributeError(f"module 'sglang' has no attribute {name!r}")

    __getattr__.__eagle3_ext__ = True
    return __getattr__


def install_into(sglang_module) -> None:
    previous = sglang_module.__dict__.get("__getattr__")
    if getattr(previous, "__eagle3_ext__", False):
        return
    sglang_module.__getattr__ = _lazy_getattr(previous)
    if isinstance(getattr(sglang_module, "__all__", None), list) and "LLM" not in sglang_module.__all__:
        sglang_module.__all__.append("LLM")


def apply() -> str:
    sglang = sys.modules.get("sglang")
    if sglang is None:
        import sglang
    if "LLM" in sglang.__dict__:
        raise NotApplicable("this SGLang already defines sglang.LLM")
    install_into(sglang)
    return "sglang.LLM -> sglang_eagle3_ext.llm.LLM (sglang.Engine subclass)"
