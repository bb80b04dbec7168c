"""Run a callback right after a module is imported (or now, if it already is).

Used by the bootstrap (react to `sglang`) and by patches of model classes, so that patching a
model costs nothing in the SGLang processes that never import that model (launcher, tokenizer,
detokenizer). Standard library only: the bootstrap .pth imports this in every Python process.
"""

import importlib.abc
import importlib.machinery
import sys

_PENDING: dict = {}  # module name -> [callback(module), ...]


class _Watcher(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname not in _PENDING:
            return None
        # PathFinder searches sys.path / the parent's __path__ directly (not sys.meta_path), so
        # this cannot recurse.
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        original_exec = spec.loader.exec_module

        def exec_module(module):
            original_exec(module)
            for callback in _PENDING.pop(fullname, []):
                _guarded(callback, module)
            if not _PENDING:
                _remove_watcher()

        spec.loader.exec_module = exec_module
        return spec


def _guarded(callback, module) -> None:
    """A failing callback is one log line; SGLang's own import of the module goes on, and so do
    the other callbacks (patches guard themselves too; this is the last line of defence)."""
    try:
        callback(module)
    except Exception as e:
        import logging

        logging.getLogger("sglang_eagle3_ext").error(
            "sglang-eagle3-ext: post-import hook for %s failed (%s: %s); module left as SGLang made it",
            module.__name__, type(e).__name__, e)


def _remove_watcher():
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _Watcher)]


def when_imported(name: str, callback) -> None:
    """callback(module) once `name` is imported; immediately if it already is."""
    module = sys.modules.get(name)
    if module is not None:
        _guarded(callback, module)
        return
    _PENDING.setdefault(name, []).append(callback)
    if not any(isinstance(f, _Watcher) for f in sys.meta_path):
        sys.meta_path.insert(0, _Watcher())


def forget(name: str, callback) -> None:
    """Drop a callback that has not run yet."""
    callbacks = _PENDING.get(name, [])
    if callback in callbacks:
        callbacks.remove(callback)
    if not callbacks:
        _PENDING.pop(name, None)


def pending() -> list:
    """Modules still awaited (for doctor / tests)."""
    return sorted(_PENDING)
