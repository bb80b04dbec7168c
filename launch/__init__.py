"""Launch presets for the published EAGLE-3 drafts (installed as sglang_eagle3_ext.launch).

One JSON file per draft (low-latency and throughput variants); `python -m
sglang_eagle3_ext.launch --list` shows them, presets.py reads them, validate.py checks them
against model folders, __main__.py starts sglang.launch_server with one.
"""
