"""Post-import hook for `sglang`, installed by the bootstrap .pth in every Python process.

Costs one cheap finder in sys.meta_path until something imports `sglang`; then it
  * adds `sglang.LLM` (so `import sglang as sgl; sgl.LLM(...)` needs no extra import),
  * watches for the engine module, so the offline engine's self-check wraps Engine.__init__
    before the first engine starts (SGLang loads plugins only inside it), and
  * applies the plugin where SGLang has no `sglang.srt.plugins` entry-point group (old versions);
    newer SGLang calls our entry point itself in each of its processes.
Each goes through the same Patch.run() as the entry point (once per process, guarded).
"""

from .post_import import when_imported


def _has_plugin_group() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("sglang.srt.plugins") is not None
    except ImportError:
        return False


def _on_sglang_imported(module) -> None:
    if not _has_plugin_group():
        from sglang_eagle3_ext.plugin import load

        load()
        return
    from sglang_eagle3_ext.patches import BY_NAME

    for name in ("llm_alias", "selfcheck.engine"):
        BY_NAME[name].run()


def install() -> None:
    when_imported("sglang", _on_sglang_imported)
