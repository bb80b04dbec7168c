"""Post-import hook for `sglang`, installed by the bootstrap .pth in every Python process.

Costs one cheap finder in sys.meta_path until something imports `sglang`; then it
  * adds `sglang.LLM` (so `import sglang as sgl; sgl.LLM(...)` needs no extra import),
  * watches for the engine module, so the offline engine's self-check wraps Engine.__init__
    before the first engine starts (SGLang loads plugins only inside it), and
  * applies the plugin where SGLang has no `sglang.srt.plugins` entry-point group (old versions);
    newer SGLang calls our entry point itself in each of its processes.
"""

from .post_import import when_imported


def _has_plugin_group() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("sglang.srt.plugins") is not None
    except ImportError:
        return False


def _on_sglang_imported(module) -> None:
    from sglang_eagle3_ext.patches import llm_alias

    llm_alias.install_into(module)
    try:
        from sglang_eagle3_ext.patches import warmup_selfcheck

        warmup_selfcheck.watch_engine()
    except Exception as e:  # NotApplicable (no engine module) or an older layout: no engine check
        import logging

        logging.getLogger("sglang_eagle3_ext").info("sglang-eagle3-ext: no engine self-check: %s", e)
    if not _has_plugin_group():
        from sglang_eagle3_ext.plugin import load

        load()


def install() -> None:
    when_imported("sglang", _on_sglang_imported)
