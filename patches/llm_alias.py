"""`sglang.LLM` as an alias of the offline Engine (upstream only has `sglang.Engine`).

Resolved lazily through a module `__getattr__`, so `import sglang` stays as cheap as before and
`sgl.LLM` is a real class (isinstance works).
"""

import importlib

from .base import NotApplicable, Patch, Target


def _lazy_getattr(previous):
    def __getattr__(name):
        if name == "LLM":
            from sglang_eagle3_ext.llm import LLM

            return LLM
        if previous is not None:
            return previous(name)
        raise AttributeError(f"module 'sglang' has no attribute {name!r}")

    return __getattr__


def plan(p) -> str:
    sglang = importlib.import_module("sglang")
    if "LLM" in vars(sglang):
        raise NotApplicable("this SGLang already defines sglang.LLM")
    p.add("sglang:__getattr__", _lazy_getattr(vars(sglang).get("__getattr__")))
    names = getattr(sglang, "__all__", None)
    if isinstance(names, list) and "LLM" not in names:
        p.replace("sglang:__all__", [*names, "LLM"])
    return "sglang.LLM -> sglang_eagle3_ext.llm.LLM (sglang.Engine subclass)"


PATCH = Patch("llm_alias", "sgl.LLM = offline Engine (accepts model=)", plan, targets=[
    Target("sglang:__getattr__", "add"),
    Target("sglang:__all__", "set", optional=True),
])
