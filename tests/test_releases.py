"""The plugin on other SGLang releases than the pinned one: doctor, then EAGLE-3 greedy = baseline.

Each release is layered over the venv by scripts/install_release.py (scripts/install.sh does it)
and run in a subprocess with that layer first on PYTHONPATH (tests/release_smoke.py); its engines'
scheduler processes inherit it. Which releases and what each proved: docs/compatibility.md.
"""

import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "scripts"))
from install_release import SMOKE_RELEASES, layer_dir, layer_env  # noqa: E402

SMOKE_TIMEOUT_S = 1800


@pytest.fixture(scope="module", params=SMOKE_RELEASES)
def smoke(request, models, tmp_path_factory):
    version = request.param
    if not os.path.exists(os.path.join(layer_dir(version), ".complete")):
        pytest.fail(f"SGLang {version} is not layered: run bash scripts/install.sh "
                    f"(or .venv/bin/python scripts/install_release.py {version})")
    out = tmp_path_factory.mktemp(f"smoke-{version}") / "smoke.json"
    proc = subprocess.run([sys.executable, os.path.join(HERE, "release_smoke.py"),
                           os.path.dirname(models["target"]), str(out)],
                          env=layer_env(version), capture_output=True, text=True,
                          timeout=SMOKE_TIMEOUT_S)
    result = json.loads(out.read_text()) if out.exists() else {"runs": {}}
    result["version"], result["returncode"] = version, proc.returncode
    result["log_tail"] = "\n".join(l for l in (proc.stdout + proc.stderr).splitlines()
                                   if "RuntimeWarning" not in l and "output = op(" not in l)[-6000:]
    return result


def statuses(smoke):
    return {p["name"]: p["status"] for p in smoke["doctor"]["patches"]}


def test_the_layered_release_is_the_one_that_ran(smoke):
    assert smoke.get("sglang") == smoke["version"], smoke["log_tail"]
    assert smoke["doctor"]["versions"]["sglang"] == smoke["version"]
    assert smoke["doctor"]["entry_point"]


def test_doctor_reports_no_failed_patch(smoke):
    failed = {n: s for n, s in statuses(smoke).items() if s == "failed"}
    assert not failed, failed


def test_the_cpu_patches_eagle3_needs_applied(smoke):
    got = statuses(smoke)
    assert {n: got[n] for n in ("cpu_rotary", "cpu_cache_locs", "tree_ops")} == \
        dict.fromkeys(("cpu_rotary", "cpu_cache_locs", "tree_ops"), "applied")


def _run(smoke, name):
    run = smoke["runs"].get(name)
    assert run is not None, f"SGLang {smoke['version']}: {name} did not finish\n{smoke['log_tail']}"
    return run


@pytest.mark.parametrize("name", ["eagle3_topk1", "eagle3_topk4"])
def test_eagle3_greedy_equals_the_baseline(smoke, name):
    base, got = _run(smoke, "base"), _run(smoke, name)
    assert got["output_ids"] == base["output_ids"]
    assert got["verify_steps"] > 0  # speculation really ran
