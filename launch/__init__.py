"""Launch presets for the published EAGLE-3 drafts (installed as sglang_eagle3_ext.launch).

Presets are data (one JSON per draft) consumed by `python -m sglang_eagle3_ext.launch`;
they arrive with the presets issue. Nothing here yet.
"""
