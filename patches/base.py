"""The patch contract: each patch probes what it needs, applies once, and reports its status.

We keep our own tiny registry instead of SGLang's HookRegistry because (a) the same patches must
run on SGLang versions that have no HookRegistry, and (b) `doctor` and the server need each
patch's outcome synchronously, one line per patch.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Callable, Optional

logger = logging.getLogger("sglang_eagle3_ext")

APPLIED, SKIPPED, FAILED = "applied", "skipped", "failed"
DISABLE_ENV = "SGLANG_EAGLE3_EXT_DISABLE"  # comma-separated patch names to leave out


def disabled() -> set:
    import os

    return {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}


class NotApplicable(Exception):
    """Raised by a patch's apply() when the installed SGLang does not need or allow it."""


@dataclass
class Patch:
    name: str
    summary: str
    apply: Callable[[], Optional[str]]  # returns a detail string; raises NotApplicable to skip
    status: Optional[str] = None
    detail: str = ""

    def run(self) -> str:
        """Apply once; later calls return the first outcome (patches are idempotent)."""
        if self.status is not None:
            return self.status
        if self.name in disabled():
            self.status, self.detail = SKIPPED, f"disabled by {DISABLE_ENV}"
            logger.info("sglang-eagle3-ext: patch %s not applied: %s", self.name, self.detail)
            return self.status
        try:
            self.detail = self.apply() or ""
            self.status = APPLIED
        except NotApplicable as e:
            self.status, self.detail = SKIPPED, str(e)
            logger.info("sglang-eagle3-ext: patch %s not applied: %s", self.name, e)
        except Exception as e:  # one clear line; SGLang stays unpatched for this concern
            self.status, self.detail = FAILED, f"{type(e).__name__}: {e}"
            logger.error("sglang-eagle3-ext: patch %s FAILED (%s); SGLang left unpatched for it",
                         self.name, self.detail)
        return self.status


def wrap_method(owner, name: str, make_wrapper: Callable[[Callable], Callable]) -> None:
    """Replace owner.name by make_wrapper(original) unless our wrapper is already there."""
    original = getattr(owner, name)
    if getattr(original, "__eagle3_ext_wrapped__", False):
        return
    wrapper = functools.wraps(original)(make_wrapper(original))
    wrapper.__eagle3_ext_wrapped__ = True
    setattr(owner, name, wrapper)


def import_or_skip(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise NotApplicable(f"{module} not importable ({e})") from None


def module_exists(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:
        return False


def patch_when_imported(module_name: str, patch) -> None:
    """patch(module) once SGLang imports module_name: importing model modules up front would cost
    seconds in every SGLang process, most of which never build a model."""
    from sglang_eagle3_ext.post_import import when_imported

    if not module_exists(module_name):
        raise NotApplicable(f"{module_name} not in this SGLang")
    when_imported(module_name, patch)
