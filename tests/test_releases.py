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
from release_smoke import PENALIZED  # noqa: E402

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
    result = json.loads(out.read_text()) if out.exists() else {}
    result["version"], result["returncode"] = version, proc.returncode
    result["log_tail"] = "\n".join(l for l in (proc.stdout + proc.stderr).splitlines()
                                   if "RuntimeWarning" not in l and "output = op(" not in l)[-6000:]
    return result


def need(smoke, key):
    """What the smoke wrote under key; a clear failure (with its log) where it died before."""
    assert key in smoke, f"SGLang {smoke['version']}: the smoke wrote no {key!r} " \
                         f"(exit {smoke['returncode']})\n{smoke['log_tail']}"
    return smoke[key]


def statuses(smoke):
    return {p["name"]: p["status"] for p in need(smoke, "doctor")["patches"]}


def test_the_layered_release_is_the_one_that_ran(smoke):
    assert need(smoke, "sglang") == smoke["version"]
    assert need(smoke, "doctor")["versions"]["sglang"] == smoke["version"]
    assert need(smoke, "doctor")["entry_point"].startswith("registered")


def test_doctor_reports_no_failed_patch(smoke):
    failed = {n: s for n, s in statuses(smoke).items() if s == "failed"}
    assert not failed, failed


# What each patch does in the EAGLE-3 topk-4 engine's scheduler (after its model imports), per
# release; docs/compatibility.md shows the same table. An upgrade that moves a target changes it.
_SCHEDULER_COMMON = {
    "llm_alias": "applied", "draft_checks": "applied", "cpu_rotary": "applied", "cpu_cache_locs": "applied",
    "cpu_draft_embed": "applied", "mla_q_proj": "applied", "eagle3_capture.Qwen2ForCausalLM": "applied",
    "eagle3_capture.LlamaForCausalLM": "applied", "eagle3_capture.Glm4MoeForCausalLM": "applied",
    "eagle3_capture.Glm4MoeLiteForCausalLM": "applied", "eagle3_capture.DeepseekV2ForCausalLM": "applied",
    "eagle3_capture.GlmMoeDsaForCausalLM@glm4_moe": "applied",
    "eagle3_capture.GlmMoeDsaForCausalLM@glm_moe_dsa": "skipped", "draft_dtype": "applied",
    "tree_ops": "applied", "tree_attention": "skipped", "fp8_moe_shards": "applied",
    "fp8_moe_kernel": "skipped", "server_info": "applied", "spec_metrics": "applied", "metrics_setup": "applied",
    # the scheduler never imports the entry points these wait for
    "selfcheck.http": "pending", "selfcheck.engine": "pending", "selfcheck.state": "applied",
    "openai_stream_logprobs": "pending",
}
PINNED_SCHEDULER = {
    # SGLang turns both off for --device cpu itself (no switch / its own speculative CPU rule)
    "0.5.16": dict(_SCHEDULER_COMMON, cpu_piecewise_graph="skipped", cpu_spec_overlap="skipped",
                   **{"eagle_sample.penalties": "applied"}),
    # 0.5.13 samples verify inside EagleVerifyInput.verify / eagle_info_v2: no eagle_sample seam
    "0.5.13": dict(_SCHEDULER_COMMON, cpu_piecewise_graph="applied", cpu_spec_overlap="applied",
                   **{"eagle_sample.penalties": "skipped"}),
}


# Patches that cannot apply on a release (docs/compatibility.md says what that leaves unfixed there).
# eagle_sample.penalties on 0.5.13: no eagle_utils.eagle_sample (penalties stay upstream's relaxed ones).
CANNOT_APPLY = {"0.5.16": set(), "0.5.13": {"eagle_sample.penalties"}}


def test_doctor_targets_finds_what_every_wanted_patch_needs(smoke):
    compat = need(smoke, "compat")
    bad = {p["name"]: p["detail"] for p in compat["patches"] if p["verdict"] == "cannot apply"}
    assert set(bad) == CANNOT_APPLY[smoke["version"]], bad
    assert compat["ok"] == (not bad)


def test_pinned_patch_statuses_in_the_scheduler(smoke):
    got = _run(smoke, "eagle3_topk4")["scheduler_patches"]
    assert got == PINNED_SCHEDULER[smoke["version"]], {
        p["name"]: (p["status"], p["detail"]) for p in need(smoke, "doctor")["patches"]}


def test_tree_sampling_is_reported_as_not_covered(smoke):
    """Both releases take sampling's ops from sgl_kernel where no rebinding reaches (see tree_ops):
    the doctor must say so rather than claim tree sampling runs."""
    detail = {p["name"]: p["detail"] for p in need(smoke, "doctor")["patches"]}["tree_ops"]
    assert "tree sampling (temperature > 0) NOT covered" in detail, detail


def _run(smoke, name):
    run = need(smoke, "runs").get(name)
    assert run is not None, f"SGLang {smoke['version']}: {name} did not finish\n{smoke['log_tail']}"
    return run


# Releases where eagle_sample.penalties applies: there penalized requests must equal the baseline too.
EXACT_PENALTIES = {"0.5.16"}


@pytest.mark.parametrize("name", ["eagle3_topk1", "eagle3_topk4"])
def test_eagle3_greedy_equals_the_baseline(smoke, name):
    base, got = _run(smoke, "base"), _run(smoke, name)
    assert got["verify_steps"] > 0 and got["accept_length"] > 1.2  # speculation really decided tokens
    exact = smoke["version"] in EXACT_PENALTIES
    for i, (want, have) in enumerate(zip(base["output_ids"], got["output_ids"])):
        if exact or i not in PENALIZED:  # elsewhere upstream's relaxed penalties remain (documented)
            assert have == want, (i, smoke["requests"][i], want, have)


def test_the_penalized_requests_differ_from_their_plain_twins(smoke):
    out = _run(smoke, "base")["output_ids"]
    for i, twin in PENALIZED.items():  # a penalty that bites
        assert out[i] != out[twin], (smoke["requests"][i], out[i])
