"""sglang-eagle3-ext: EAGLE-3 speculative decoding for a vanilla SGLang install.

Kept import-light on purpose: the bootstrap .pth imports this package in every Python process.
"""

__version__ = "0.1.0"
