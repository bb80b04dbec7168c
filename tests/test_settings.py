"""One home for settings: every SGLANG_EAGLE3_EXT_* variable declared once, typed, documented;
an invalid one stops startup with one line naming it, in the launcher as in the engine."""

import os
import re
import subprocess
import sys

import pytest

from sglang_eagle3_ext.errors import Eagle3ConfigError
from sglang_eagle3_ext.settings import DECLARED, PREFIX, settings

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_defaults_parse_and_each_kind_rejects_garbage_naming_the_variable():
    s = settings({})
    assert s.tree_ops == "auto" and s.fp8_moe is False and s.tree_attention is False
    assert s.guard_window == 256 and s.break_even is None and s.disable == ()
    for setting in DECLARED:
        if setting.kind in ("list", "path"):
            continue
        with pytest.raises(Eagle3ConfigError) as e:
            settings({setting.env: "not-a-valid-value!"})
        msg = str(e.value)
        assert setting.env in msg and "'not-a-valid-value!'" in msg and "use " in msg


def test_booleans_read_zero_as_off():
    assert settings({"SGLANG_EAGLE3_EXT_NO_BOOTSTRAP": "0"}).no_bootstrap is False
    assert settings({"SGLANG_EAGLE3_EXT_NO_BOOTSTRAP": "1"}).no_bootstrap is True
    assert settings({"SGLANG_EAGLE3_EXT_TREE_ATTENTION": "on"}).tree_attention is True
    assert settings({"SGLANG_EAGLE3_EXT_SELFCHECK": "0"}).selfcheck == "off"


def test_bootstrap_pth_reads_booleans_like_the_settings():
    """The .pth cannot import the settings (stdlib one-liner): it must agree with them."""
    env = dict(os.environ, SGLANG_EAGLE3_EXT_NO_BOOTSTRAP="0")
    r = subprocess.run([sys.executable, "-c", "import sys; print('sglang_eagle3_ext' in sys.modules)"],
                       capture_output=True, text=True, env=env, cwd="/", timeout=120)
    assert r.stdout.strip() == "True", r.stderr
    env["SGLANG_EAGLE3_EXT_NO_BOOTSTRAP"] = "yes"
    r = subprocess.run([sys.executable, "-c", "import sys; print('sglang_eagle3_ext' in sys.modules)"],
                       capture_output=True, text=True, env=env, cwd="/", timeout=120)
    assert r.stdout.strip() == "False", r.stderr


def test_readme_lists_every_setting_and_nothing_else():
    readme = open(os.path.join(REPO, "README.md")).read()
    listed = set(re.findall(r"`(SGLANG_EAGLE3_EXT_[A-Z0-9_]+)", readme))
    assert listed == {s.env for s in DECLARED}


def test_no_module_reads_our_variables_but_the_settings():
    offenders = []
    for top in ("sglang_eagle3_ext", "patches", "kernels", "launch"):
        for root, _, files in os.walk(os.path.join(REPO, top)):
            for f in files:
                if f.endswith(".py") and f != "settings.py":
                    text = open(os.path.join(root, f)).read()
                    if re.search(r"environ(\.get)?\(?\[?[\"']" + PREFIX, text) or \
                            re.search(r"getenv\([\"']" + PREFIX, text):
                        offenders.append(os.path.join(root, f))
    assert offenders == []


@pytest.mark.parametrize("env, names", [
    ({"SGLANG_EAGLE3_EXT_AUX_LAYER_RULE": "leavng"}, ["SGLANG_EAGLE3_EXT_AUX_LAYER_RULE", "'leavng'",
                                                     "leaving, entering"]),
    ({"SGLANG_EAGLE3_EXT_DISABLE": "tree_opz"}, ["SGLANG_EAGLE3_EXT_DISABLE", "tree_opz", "tree_ops"]),
    ({"SGLANG_EAGLE3_EXT_TREE_ATENTION": "on"}, ["SGLANG_EAGLE3_EXT_TREE_ATENTION", "doctor"]),
])
def test_invalid_setting_stops_the_launcher_with_one_line(env, names):
    r = subprocess.run([sys.executable, "-m", "sglang.launch_server", "--model-path", "/nonexistent"],
                       capture_output=True, text=True, env=dict(os.environ, **env), cwd="/", timeout=300)
    assert r.returncode != 0
    lines = [l for l in r.stderr.splitlines() if l.startswith("sglang-eagle3-ext: error:")]
    assert lines, r.stderr[-3000:]
    for name in names:
        assert name in lines[-1]
    assert "Traceback" not in r.stderr, r.stderr[-3000:]


def test_invalid_setting_stops_the_offline_engine_before_loading():
    code = ("import sglang as sgl\n"
            "sgl.Engine(model_path='/nonexistent')\n")
    env = dict(os.environ, SGLANG_EAGLE3_EXT_FP8_MOE="maybe")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd="/",
                       timeout=300)
    assert r.returncode != 0
    assert "sglang-eagle3-ext: error: SGLANG_EAGLE3_EXT_FP8_MOE='maybe' is invalid" in r.stderr, r.stderr[-3000:]
