"""The plugin's packaging and patch machinery, against the installed real SGLang."""

import importlib.metadata as md
import json
import logging
import subprocess
import sys

from sglang_eagle3_ext.patches import ALL_PATCHES, apply_all
from sglang_eagle3_ext.patches.base import APPLIED, FAILED, PENDING, SKIPPED, NotApplicable, Patch


def run_python(code: str, **kw) -> subprocess.CompletedProcess:
    # cwd=/ so the repo checkout does not shadow what is installed
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd="/", **kw)


def test_entry_point_is_registered_in_sglang_group():
    eps = [ep for ep in md.entry_points(group="sglang.srt.plugins") if ep.name == "eagle3_ext"]
    assert len(eps) == 1 and eps[0].value == "sglang_eagle3_ext.plugin:load"


def test_subpackages_install_under_our_name_not_top_level():
    import sglang_eagle3_ext.kernels
    import sglang_eagle3_ext.launch
    import sglang_eagle3_ext.patches

    r = run_python("import importlib.util as u; print(u.find_spec('patches'), u.find_spec('launch'))")
    assert r.stdout.split() == ["None", "None"], r.stdout + r.stderr


def test_sgl_LLM_exists_after_plain_import_and_is_the_engine():
    r = run_python("import sglang as sgl; from sglang.srt.entrypoints.engine import Engine; "
                   "print(issubclass(sgl.LLM, Engine), sgl.LLM.__module__, 'LLM' in sgl.__all__)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "sglang_eagle3_ext.llm", "True"]


def test_bootstrap_costs_nothing_without_sglang():
    r = run_python("import sys; print(sorted(m for m in sys.modules if m.startswith(('sglang', 'torch'))))")
    assert r.returncode == 0, r.stderr
    # Only our package and its import hook: no patches, no SGLang, no torch.
    assert json.loads(r.stdout.replace("'", '"')) == [
        "sglang_eagle3_ext", "sglang_eagle3_ext.import_hook", "sglang_eagle3_ext.post_import"]


def test_bootstrap_can_be_switched_off():
    import os

    env = dict(os.environ, SGLANG_EAGLE3_EXT_NO_BOOTSTRAP="1")
    r = run_python("import sys; print('sglang_eagle3_ext' in sys.modules)", env=env)
    assert r.stdout.strip() == "False"


def test_doctor_lists_every_patch_and_the_tree_ops():
    r = subprocess.run([sys.executable, "-m", "sglang_eagle3_ext", "doctor", "--json"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    rep = json.loads(r.stdout)
    assert [p["name"] for p in rep["patches"]] == [p.name for p in ALL_PATCHES]
    assert all(p["status"] in (APPLIED, SKIPPED, PENDING) for p in rep["patches"])
    assert rep["versions"]["sglang"] and rep["entry_point"] == "registered"
    # No GPU here: tree ops must be routed to a Triton implementation.
    assert rep["tree_ops"] in ("triton", "sglang-triton")


def test_doctor_text_output_names_each_patch():
    r = subprocess.run([sys.executable, "-m", "sglang_eagle3_ext", "doctor"],
                       capture_output=True, text=True, timeout=300)
    for p in ALL_PATCHES:
        assert p.name in r.stdout
    assert "tree ops:" in r.stdout and "sglang " in r.stdout


def test_a_failing_patch_logs_one_clear_line_and_does_not_raise(caplog):
    def boom(p):
        raise AttributeError("module 'sglang.srt.x' has no attribute 'y'")

    patch = Patch("boom", "a patch whose target moved", boom)
    with caplog.at_level(logging.INFO, logger="sglang_eagle3_ext"):
        assert patch.run() == FAILED
        assert patch.run() == FAILED  # idempotent: not retried, not logged again
    records = [r for r in caplog.records if "boom" in r.getMessage()]
    assert len(records) == 1 and records[0].levelno == logging.ERROR
    assert "FAILED" in records[0].getMessage() and "has no attribute 'y'" in records[0].getMessage()
    assert records[0].exc_info is None  # one line, no traceback


def test_a_patch_that_does_not_apply_says_why_once(caplog):
    def not_here(p):
        raise NotApplicable("needs sgl-kernel")

    patch = Patch("absent", "x", not_here)
    with caplog.at_level(logging.INFO, logger="sglang_eagle3_ext"):
        assert patch.run() == SKIPPED and patch.run() == SKIPPED
    assert [r.getMessage() for r in caplog.records if "absent" in r.getMessage()] == [
        "sglang-eagle3-ext: patch absent not applied: needs sgl-kernel"]


def test_a_patch_can_be_switched_off_by_name(monkeypatch, caplog):
    import logging

    monkeypatch.setenv("SGLANG_EAGLE3_EXT_DISABLE", "tree_ops, off")
    called = []
    patch = Patch("off", "x", lambda p: called.append(1))
    with caplog.at_level(logging.INFO, logger="sglang_eagle3_ext"):
        assert patch.run() == SKIPPED
    assert called == [] and patch.detail == "disabled by SGLANG_EAGLE3_EXT_DISABLE"
    assert Patch("on", "x", lambda p: "done").run() == APPLIED


def test_wheel_has_the_bootstrap_and_no_top_level_packages(tmp_path):
    """`pip install .` installs from this wheel: .pth at the root, sub-packages under our name."""
    import os
    import zipfile

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                        repo, "-w", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = tmp_path.glob("sglang_eagle3_ext-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "sglang_eagle3_ext_bootstrap.pth" in names
    tops = {n.split("/")[0] for n in names if "/" in n}
    assert tops == {"sglang_eagle3_ext", next(t for t in tops if t.endswith(".dist-info"))}
    for sub in ("patches", "kernels", "launch"):
        assert f"sglang_eagle3_ext/{sub}/__init__.py" in names
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt")))
    assert b"[sglang.srt.plugins]" in entry_points and b"eagle3_ext = sglang_eagle3_ext.plugin:load" in entry_points


def test_repo_kernels_folder_does_not_shadow_pypi_kernels():
    """Run from the repo root, `import kernels` (SGLang's FA3 loader) must get PyPI's package."""
    import os

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, "-c", "import kernels; print(kernels.__file__, callable(kernels.get_kernel))"],
                       capture_output=True, text=True, timeout=120, cwd=repo)
    assert r.returncode == 0, r.stderr
    path, ok = r.stdout.split()
    assert "site-packages" in path and not path.startswith(os.path.join(repo, "kernels")) and ok == "True"
