"""Benchmark harness: `python -m sglang_eagle3_ext.bench` (see __main__.py for the protocol).

prompts.py loads the built-in prompt set or a user file, client.py times one streamed request,
metrics.py reads acceptance from the server's Prometheus counters, runner.py runs the protocol
against one server, report.py writes the Markdown table, JSON and plot.
"""
