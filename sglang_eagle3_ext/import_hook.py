"""Post-import hook for `sglang`, installed by the bootstrap .pth in every Python process.

Costs one cheap finder in sys.meta_path until something imports `sglang`; then it
  * adds `sglang.LLM` (so `import sglang as sgl; sgl.LLM(...)` needs no extra import), and
  * applies the plugin where SGLang has no `sglang.srt.plugins` entry-point group (old versions);
    newer SGLang calls our entry point itself in each of its processes.
The finder removes itself after firing.
"""

import importlib.abc
import importlib.machinery
import sys


class _SGLangImportWatcher(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname != "sglang":
            return None
        # PathFinder searches sys.path directly (not sys.meta_path), so this cannot recurse.
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        original_exec = spec.loader.exec_module

        def exec_module(module):
            original_exec(module)
            _remove_self()
            _on_sglang_imported(module)

        spec.loader.exec_module = exec_module
        return spec


def _remove_self():
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _SGLangImportWatcher)]


def _has_plugin_group() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("sglang.srt.plugins") is not None
    except ImportError:
        return False


def _on_sglang_imported(module) -> None:
    from sglang_eagle3_ext.patches import llm_alias

    llm_alias.install_into(module)
    if not _has_plugin_group():
        from sglang_eagle3_ext.plugin import load

        load()


def install() -> None:
    if "sglang" in sys.modules:
        _on_sglang_imported(sys.modules["sglang"])
        return
    if not any(isinstance(f, _SGLangImportWatcher) for f in sys.meta_path):
        sys.meta_path.insert(0, _SGLangImportWatcher())
