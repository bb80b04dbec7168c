"""Entry point `sglang.srt.plugins: eagle3_ext`, called by SGLang in every process it starts."""

import logging

logger = logging.getLogger("sglang_eagle3_ext")


def load() -> None:
    from sglang_eagle3_ext.patches import apply_all

    statuses = apply_all()
    logger.info("sglang-eagle3-ext: %s", ", ".join(f"{k}={v}" for k, v in statuses.items()))
