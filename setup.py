"""sglang-eagle3-ext: EAGLE-3 speculative decoding for a vanilla SGLang install."""

import os

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

_HERE = os.path.dirname(os.path.abspath(__file__))

# The bootstrap .pth lives at the root of site-packages; it applies the plugin on SGLang
# versions that have no `sglang.srt.plugins` entry-point group and adds `sglang.LLM`.
PTH_NAME = "sglang_eagle3_ext_bootstrap.pth"
PTH_SRC = os.path.join(_HERE, "sglang_eagle3_ext", PTH_NAME)


class build_py_with_pth(build_py):
    """build_py that also drops the bootstrap .pth at the top of the wheel (also for -e)."""

    def run(self):
        super().run()
        self.copy_file(PTH_SRC, os.path.join(self.build_lib, PTH_NAME), preserve_mode=0)

    def get_outputs(self, include_bytecode=1):
        return super().get_outputs(include_bytecode) + [os.path.join(self.build_lib, PTH_NAME)]


class editable_wheel_with_pth(editable_wheel):
    """`pip install -e .` builds its wheel without build_py outputs: add the .pth to it too."""

    def _select_strategy(self, *args, **kwargs):  # setuptools >= 64 editable strategy hook
        strategy = super()._select_strategy(*args, **kwargs)

        class WithPth:
            def __enter__(self):
                strategy.__enter__()
                return self

            def __exit__(self, *exc):
                return strategy.__exit__(*exc)

            def __call__(self, wheel, files, mapping):
                strategy(wheel, files, mapping)
                wheel.writestr(PTH_NAME, open(PTH_SRC, "rb").read())

        return WithPth()


setup(
    name="sglang-eagle3-ext",
    version="0.1.0",
    description="EAGLE-3 speculative decoding for vanilla SGLang: adapters, checks, Triton kernels, metrics",
    long_description=open("README.md").read() if os.path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=[
        "sglang_eagle3_ext",
        "sglang_eagle3_ext.patches",
        "sglang_eagle3_ext.kernels",
        "sglang_eagle3_ext.launch",
        "sglang_eagle3_ext.bench",
    ],
    # patches/, kernels/ and launch/ sit at the repo root but install under our package:
    # a top-level `kernels` would shadow the PyPI package that SGLang imports.
    package_dir={
        "sglang_eagle3_ext": "sglang_eagle3_ext",
        "sglang_eagle3_ext.patches": "patches",
        "sglang_eagle3_ext.kernels": "kernels",
        "sglang_eagle3_ext.launch": "launch",
    },
    package_data={"sglang_eagle3_ext": ["*.txt"], "sglang_eagle3_ext.launch": ["*.json"],
                  "sglang_eagle3_ext.bench": ["*.jsonl"],
                  "sglang_eagle3_ext.kernels": ["fp8_moe_configs/*.json"]},
    cmdclass={"build_py": build_py_with_pth, "editable_wheel": editable_wheel_with_pth},
    install_requires=["prometheus-client"],
    entry_points={
        "sglang.srt.plugins": ["eagle3_ext = sglang_eagle3_ext.plugin:load"],
        "console_scripts": ["sglang-eagle3-ext = sglang_eagle3_ext.__main__:main"],
    },
)
