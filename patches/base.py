"""The patch contract: declare, probe, then commit all or nothing; report what really happened.

A Patch declares every SGLang attribute it touches (`Target`: a dotted path, the kind of change, the
parameters it relies on). Applying is two-phase:

1. probe: `plan(p)` resolves what it needs through the Plan `p` and records changes on it; it
   changes nothing. A missing attribute or a signature that differs raises NotApplicable. A change
   to anything not declared in `targets` is refused (a bug in the patch, status failed), so the
   declaration is the truth that `doctor --targets` checks.
2. commit: every recorded change is made, or none (a failure part-way rolls back what was done).
   The originals are recorded: `revert()` restores SGLang exactly. A replaced module global is also
   rebound in every module that imported it by value (`from x import f`), as SGLang's own
   HookRegistry does (`_propagate_patch`), and those rebinds are undone by revert too.

Deferred patches (`on_import`) are `pending (on import of X)` until SGLang imports X; then the same
guarded path runs: an exception there is one log line, never an exception in SGLang's import.

We keep our own small registry instead of SGLang's HookRegistry because the same patches run on
SGLang releases without one, `doctor` needs each patch's outcome synchronously, and HookRegistry
has neither an all-or-nothing commit nor a revert.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
import sys
import types
from dataclasses import dataclass, field
from typing import Callable, Optional

logger = logging.getLogger("sglang_eagle3_ext")

APPLIED, SKIPPED, FAILED, PENDING = "applied", "skipped", "failed", "pending"
KINDS = ("around", "replace", "add", "set", "read")  # read: relied on, not changed
_MISSING = object()
WRAPPED_MARK = "__eagle3_ext_wrapped__"


class NotApplicable(Exception):
    """Raised while probing when the installed SGLang does not need or allow the patch."""


# ------------------------------------------------------------------ targets


def _split(path: str) -> tuple[str, list[str]]:
    module, sep, qual = path.partition(":")
    if not sep or not qual:
        raise ValueError(f"target {path!r} is not 'module:Qualname[.attr]'")
    return module, qual.split(".")


def resolve_owner(path: str):
    """(owner object, attribute name) of `module:A.B.attr`; NotApplicable if the owner is missing."""
    module_name, parts = _split(path)
    try:
        owner = importlib.import_module(module_name)
    except ImportError as e:
        raise NotApplicable(f"{module_name} not importable ({type(e).__name__}: {e})") from None
    for i, part in enumerate(parts[:-1]):
        owner = getattr(owner, part, _MISSING)
        if owner is _MISSING:
            raise NotApplicable(f"{module_name}:{'.'.join(parts[:i + 1])} not in this SGLang")
    return owner, parts[-1]


def missing_params(fn, names, ordered: bool) -> Optional[str]:
    """None if fn takes `names` (in that leading order when ordered), else what differs."""
    try:
        have = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return "no inspectable signature"
    if have and have[0] in ("self", "cls") and (not names or names[0] not in ("self", "cls")):
        have = have[1:]
    names = list(names)
    if ordered:
        if have[:len(names)] != names:
            return f"parameters {have[:len(names) + 2]}, expected leading {names}"
        return None
    lost = [n for n in names if n not in have]
    return f"no parameter(s) {lost}" if lost else None


@dataclass(frozen=True)
class Target:
    """One SGLang attribute a patch touches: `module:Qualname.attr`.

    kind: around (wrap the callable), replace (swap an existing attribute), add (an attribute set
    on an existing owner, new or not), set (a module flag/global), read (relied on, not changed). params: the parameters our code relies on;
    ordered=True where we mirror an upstream positional call (names must lead, in that order).
    optional: the patch works without it (alternative hook points, extras)."""

    path: str
    kind: str = "around"
    params: tuple = ()
    ordered: bool = False
    optional: bool = False

    def check(self) -> tuple[str, str]:
        """('found' | 'missing' | 'signature differs', detail), importing but changing nothing."""
        try:
            owner, attr = resolve_owner(self.path)
        except NotApplicable as e:
            return "missing", str(e)
        value = getattr(owner, attr, _MISSING)
        if self.kind == "add":
            return "found", ("owner present" if value is _MISSING else "attribute already present")
        if value is _MISSING:
            return "missing", f"no attribute {attr}"
        if self.params:
            why = missing_params(value, self.params, self.ordered)
            if why:
                return "signature differs", why
        return "found", ""


# ------------------------------------------------------------------ probe: the plan


@dataclass
class Change:
    owner: object
    attr: str
    value: object
    path: str


class Plan:
    """What a patch's plan() uses to look at SGLang and to record (not make) its changes."""

    def __init__(self, patch: "Patch", module=None):
        self.patch = patch
        self.module = module  # the imported module, for on_import patches
        self.changes: list[Change] = []

    def _declared(self, path: str, kinds) -> Target:
        for t in self.patch.targets:
            if t.path == path:
                if t.kind not in kinds:
                    raise RuntimeError(f"patch {self.patch.name}: {path} declared '{t.kind}', used as {kinds}")
                return t
        raise RuntimeError(f"patch {self.patch.name}: {path} is not among its declared targets")

    def load(self, module_name: str):
        """The module, imported (NotApplicable if it cannot be)."""
        try:
            return importlib.import_module(module_name)
        except ImportError as e:
            raise NotApplicable(f"{module_name} not importable ({type(e).__name__}: {e})") from None

    def get(self, path: str, default=_MISSING):
        """The object at path (NotApplicable if absent and no default); changes nothing."""
        try:
            owner, attr = resolve_owner(path)
        except NotApplicable:
            if default is not _MISSING:
                return default
            raise
        value = getattr(owner, attr, default)
        if value is _MISSING:
            raise NotApplicable(f"{path} not in this SGLang")
        return value

    def has(self, path: str) -> bool:
        return self.get(path, None) is not None

    def params(self, path: str, names, ordered: bool = False) -> None:
        why = missing_params(self.get(path), names, ordered)
        if why:
            raise NotApplicable(f"{path}: {why}")

    def wrap(self, path: str, make_wrapper: Callable[[Callable], Callable]) -> None:
        """Replace the callable at path by make_wrapper(original); static/class methods stay so."""
        target = self._declared(path, ("around",))
        owner, attr = resolve_owner(path)
        raw = inspect.getattr_static(owner, attr, _MISSING)
        if raw is _MISSING:
            raise NotApplicable(f"{path} not in this SGLang")
        if target.params:
            self.params(path, target.params, target.ordered)
        decorator = type(raw) if isinstance(raw, (staticmethod, classmethod)) else None
        original = raw.__func__ if decorator else getattr(owner, attr)
        if _wrapped_by(original, self.patch.name):
            return  # this patch's wrapper is there already (another copy of the plugin loaded)
        wrapper = functools.wraps(original)(make_wrapper(original))
        setattr(wrapper, WRAPPED_MARK, self.patch.name)
        self.changes.append(Change(owner, attr, decorator(wrapper) if decorator else wrapper, path))

    def replace(self, path: str, value) -> None:
        self._declared(path, ("replace", "set"))
        owner, attr = resolve_owner(path)
        if not hasattr(owner, attr):
            raise NotApplicable(f"{path} not in this SGLang")
        if getattr(owner, attr) is not value:
            self.changes.append(Change(owner, attr, value, path))

    def add(self, path: str, value) -> None:
        self._declared(path, ("add",))
        owner, attr = resolve_owner(path)
        if vars(owner).get(attr, _MISSING) is value:
            return
        self.changes.append(Change(owner, attr, value, path))


def _wrapped_by(fn, name: str) -> bool:
    """Whether the wrapper chain of fn (functools.wraps' __wrapped__ links) holds patch `name`'s."""
    seen = 0
    while fn is not None and seen < 32:
        if getattr(fn, WRAPPED_MARK, None) == name:
            return True
        fn, seen = getattr(fn, "__wrapped__", None), seen + 1
    return False


# ------------------------------------------------------------------ commit / revert


@dataclass
class _Undo:
    owner: object
    attr: str
    had_own: bool
    old: object


def _is_function(value) -> bool:
    # Python functions only: a builtin (print, sys.excepthook) may be bound under its name anywhere
    return isinstance(value, (types.FunctionType, functools.partial))


def _commit(changes: list[Change]) -> tuple[list[_Undo], int]:
    """Make every change or none; returns the undo log and how many by-value copies were rebound."""
    done: list[_Undo] = []
    copies = 0
    try:
        for ch in changes:
            own = vars(ch.owner)
            old_value = getattr(ch.owner, ch.attr, _MISSING)
            undo = _Undo(ch.owner, ch.attr, ch.attr in own, own.get(ch.attr))
            setattr(ch.owner, ch.attr, ch.value)
            done.append(undo)
            if isinstance(ch.owner, types.ModuleType) and _is_function(old_value):
                for mod in list(sys.modules.values()):
                    if mod is ch.owner or not isinstance(mod, types.ModuleType):
                        continue
                    try:
                        names = [n for n, v in vars(mod).items() if v is old_value]
                    except TypeError:
                        continue
                    for name in names:
                        setattr(mod, name, ch.value)
                        done.append(_Undo(mod, name, True, old_value))
                        copies += 1
    except BaseException:
        _rollback(done)
        raise
    return done, copies


def _rollback(done: list[_Undo]) -> None:
    for u in reversed(done):
        if u.had_own:
            setattr(u.owner, u.attr, u.old)
        else:
            try:
                delattr(u.owner, u.attr)
            except AttributeError:
                pass


# ------------------------------------------------------------------ the patch


def disabled() -> set:
    from sglang_eagle3_ext.settings import settings

    return set(settings().disable)


@dataclass
class Patch:
    name: str
    summary: str
    plan: Callable[[Plan], Optional[str]]  # probes, records changes, returns a detail string
    targets: list = field(default_factory=list)
    wanted: Optional[Callable[[], Optional[str]]] = None  # a reason it is not wanted here, or None
    on_import: Optional[str] = None  # deferred until SGLang imports this module
    status: Optional[str] = None
    detail: str = ""
    _undo: list = field(default_factory=list, repr=False)

    def not_wanted(self) -> Optional[str]:
        off = disabled()
        if self.name in off or self.name.split(".")[0] in off:
            return "disabled by SGLANG_EAGLE3_EXT_DISABLE"
        return self.wanted() if self.wanted is not None else None

    def run(self) -> str:
        """Apply once; later calls return the first outcome (a pending patch stays pending)."""
        if self.status is not None:
            return self.status
        reason = self.not_wanted()
        if reason:
            return self._set(SKIPPED, reason)
        if self.on_import is None:
            return self._apply(None)
        if self.on_import not in sys.modules:
            from sglang_eagle3_ext.post_import import when_imported

            if not module_exists(self.on_import):
                return self._set(SKIPPED, f"{self.on_import} not in this SGLang")
            self._set(PENDING, f"on import of {self.on_import}")
            when_imported(self.on_import, self._apply)
            return self.status
        return self._apply(sys.modules[self.on_import])

    def _apply(self, module) -> str:
        try:
            plan = Plan(self, module)
            detail = self.plan(plan) or ""
            undo, copies = _commit(plan.changes)
            self._undo += undo  # on top of an earlier application's (revert undoes both, in order)
            if copies:
                detail += f" (+{copies} by-value cop{'y' if copies == 1 else 'ies'} rebound)"
            return self._set(APPLIED, detail)
        except NotApplicable as e:
            return self._set(SKIPPED, str(e))
        except Exception as e:  # one clear line; nothing was changed (or it was rolled back)
            return self._set(FAILED, f"{type(e).__name__}: {e}")

    def _set(self, status: str, detail: str) -> str:
        self.status, self.detail = status, detail
        if status == FAILED:
            logger.error("sglang-eagle3-ext: patch %s FAILED (%s); SGLang left unpatched for it",
                         self.name, detail)
        elif status == SKIPPED:
            logger.info("sglang-eagle3-ext: patch %s not applied: %s", self.name, detail)
        elif status == APPLIED:
            logger.debug("sglang-eagle3-ext: patch %s applied: %s", self.name, detail)
        return status

    def revert(self) -> None:
        """Restore every attribute this patch changed (tests; a pending patch is unhooked)."""
        _rollback(self._undo)
        self._undo = []
        if self.status == PENDING:
            from sglang_eagle3_ext.post_import import forget

            forget(self.on_import, self._apply)
        self.status, self.detail = None, ""

    def check_targets(self) -> list[tuple[Target, str, str]]:
        return [(t, *t.check()) for t in self.targets]

    def probe(self) -> tuple[str, str]:
        """Would this patch apply here? ('would apply' | 'not wanted' | 'cannot apply', detail), by
        running its plan without committing (a deferred patch's module is imported for it)."""
        try:
            reason = self.not_wanted()
        except Exception as e:
            return "cannot apply", f"{type(e).__name__}: {e}"
        if reason:
            return "not wanted", reason
        if self.on_import and not module_exists(self.on_import):
            return "not present", f"{self.on_import} not in this SGLang"
        try:
            module = importlib.import_module(self.on_import) if self.on_import else None
            plan = Plan(self, module)
            detail = self.plan(plan) or ""
            return "would apply", detail
        except NotApplicable as e:
            return "cannot apply", str(e)
        except Exception as e:
            return "cannot apply", f"{type(e).__name__}: {e}"


def module_exists(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False
