"""Entry point `sglang.srt.plugins: eagle3_ext`, called by SGLang in every process it starts."""

import logging

logger = logging.getLogger("sglang_eagle3_ext")


def load() -> None:
    from sglang_eagle3_ext.errors import Eagle3ConfigError

    try:
        from sglang_eagle3_ext.patches import apply_all  # builds patches from the settings too

        statuses = apply_all()
    except Eagle3ConfigError as e:
        # SGLang's plugin loader logs and swallows exceptions and would serve without us: an
        # invalid setting stops this process instead (one line, exit status 1), in every process.
        raise SystemExit(f"sglang-eagle3-ext: error: {e}") from None
    logger.info("sglang-eagle3-ext: %s", ", ".join(f"{k}={v}" for k, v in statuses.items()))
