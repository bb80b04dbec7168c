"""The patch contract (patches/base.py) on real SGLang: all or nothing, honest statuses, exact
revert, by-value copies rebound, deferred patches guarded; and the pinned SGLang's statuses."""

import json
import logging
import subprocess
import sys
import textwrap
import types

import pytest
from conftest import on_pinned_sglang

from sglang_eagle3_ext.patches import ALL_PATCHES, apply_all, revert_all
from sglang_eagle3_ext.patches.base import (APPLIED, FAILED, PENDING, SKIPPED, WRAPPED_MARK,
                                            NotApplicable, Patch, Target)


def run_python(code: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=600, cwd="/", **kw)


@pytest.fixture
def toy_module(tmp_path, monkeypatch):
    """A real module on sys.path (stands in for an SGLang module we are allowed to break)."""
    (tmp_path / "eagle3_toy.py").write_text(textwrap.dedent("""
        def f(x):
            return x + 1

        class C:
            def m(self, a, b):
                return a * b

            @staticmethod
            def s(a):
                return -a
    """))
    (tmp_path / "eagle3_toy_user.py").write_text("from eagle3_toy import f\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import eagle3_toy
    import eagle3_toy_user

    yield eagle3_toy, eagle3_toy_user
    for name in ("eagle3_toy", "eagle3_toy_user", "eagle3_toy_late"):
        sys.modules.pop(name, None)


def _snapshot(mod):
    return {"f": mod.f, "m": mod.C.__dict__["m"], "s": mod.C.__dict__["s"]}


def test_all_or_nothing_when_the_probe_fails_late(toy_module):
    toy, _ = toy_module
    before = _snapshot(toy)

    def plan(p):
        p.wrap("eagle3_toy:C.m", lambda orig: lambda self, a, b: 0)
        p.get("eagle3_toy:C.not_there")  # found missing after a change was recorded

    patch = Patch("late", "x", plan, targets=[Target("eagle3_toy:C.m")])
    assert patch.run() == SKIPPED and "not_there" in patch.detail
    assert _snapshot(toy) == before


def test_all_or_nothing_when_a_commit_step_fails(toy_module):
    toy, _ = toy_module
    before = _snapshot(toy)

    def plan(p):
        p.replace("eagle3_toy:f", lambda x: 0)
        p.wrap("eagle3_toy:C.m", lambda orig: lambda self, a, b: 0)
        p.changes.append(type(p.changes[0])(int, "real", 0, "builtins:int.real"))  # cannot be set

    patch = Patch("half", "x", plan, targets=[Target("eagle3_toy:f", "replace"), Target("eagle3_toy:C.m")])
    assert patch.run() == FAILED and "TypeError" in patch.detail
    assert _snapshot(toy) == before
    assert toy_module[1].f is before["f"]  # the by-value copy is rolled back too


def test_a_change_to_an_undeclared_target_is_refused(toy_module):
    toy, _ = toy_module
    before = _snapshot(toy)
    patch = Patch("sneaky", "x", lambda p: p.replace("eagle3_toy:f", None), targets=[])
    assert patch.run() == FAILED and "not among its declared targets" in patch.detail
    assert _snapshot(toy) == before


def test_revert_restores_exactly_and_rebinds_by_value_copies(toy_module):
    toy, user = toy_module
    before = _snapshot(toy)

    def plan(p):
        p.replace("eagle3_toy:f", lambda x: x + 2)
        p.wrap("eagle3_toy:C.m", lambda orig: lambda self, a, b: orig(self, a, b) + 1)
        p.wrap("eagle3_toy:C.s", lambda orig: lambda a: orig(a) - 1)
        p.add("eagle3_toy:C.new", 7)

    patch = Patch("toy", "x", plan, targets=[Target("eagle3_toy:f", "replace"), Target("eagle3_toy:C.m"),
                                             Target("eagle3_toy:C.s"), Target("eagle3_toy:C.new", "add")])
    assert patch.run() == APPLIED and "1 by-value copy rebound" in patch.detail
    assert toy.f(1) == 3 and user.f(1) == 3  # `from eagle3_toy import f` sees ours too
    assert toy.C().m(2, 3) == 7 and toy.C.s(1) == -2 and isinstance(toy.C.__dict__["s"], staticmethod)
    assert toy.C.new == 7
    patch.revert()
    assert _snapshot(toy) == before and user.f is before["f"] and not hasattr(toy.C, "new")
    assert patch.status is None


def test_deferred_patch_is_pending_until_import_and_a_failure_there_is_one_line(tmp_path, monkeypatch, caplog):
    (tmp_path / "eagle3_toy_late.py").write_text("def g():\n    return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    def bad_plan(p):
        raise OSError("could not read source")  # e.g. inspect.getsource on a zipped install

    good = Patch("late_good", "x", lambda p: p.replace("eagle3_toy_late:g", lambda: 2) or "ok",
                 on_import="eagle3_toy_late", targets=[Target("eagle3_toy_late:g", "replace")])
    bad = Patch("late_bad", "x", bad_plan, on_import="eagle3_toy_late")
    with caplog.at_level(logging.INFO, logger="sglang_eagle3_ext"):
        assert bad.run() == PENDING and good.run() == PENDING
        assert good.detail == "on import of eagle3_toy_late"
        import eagle3_toy_late  # must not raise

    assert eagle3_toy_late.g() == 2 and good.status == APPLIED
    assert bad.status == FAILED and "OSError: could not read source" in bad.detail
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "late_bad" in errors[0].getMessage() and errors[0].exc_info is None


def test_not_wanted_and_disabled_are_skipped_with_the_reason(monkeypatch):
    called = []
    assert Patch("w", "x", lambda p: called.append(1), wanted=lambda: "CUDA has its own").run() == SKIPPED
    monkeypatch.setenv("SGLANG_EAGLE3_EXT_DISABLE", "tree_ops")
    p = Patch("tree_ops", "x", lambda p: called.append(1))
    assert p.run() == SKIPPED and p.detail == "disabled by SGLANG_EAGLE3_EXT_DISABLE" and called == []


def test_signature_that_differs_is_not_applicable(toy_module):
    def plan(p):
        p.params("eagle3_toy:C.m", ("b", "a"), ordered=True)

    patch = Patch("order", "x", plan, targets=[Target("eagle3_toy:C.m", params=("b", "a"), ordered=True)])
    assert patch.run() == SKIPPED and "expected leading ['b', 'a']" in patch.detail
    assert Target("eagle3_toy:C.m", params=("b", "a"), ordered=True).check()[0] == "signature differs"
    assert Target("eagle3_toy:C.m", params=("a", "b"), ordered=True).check() == ("found", "")
    assert Target("eagle3_toy:C.gone").check()[0] == "missing"


# ------------------------------------------------------------------ the real patches on real SGLang


def _declared_values():
    """Every declared, present target's current object (identity), for an exact before/after."""
    from sglang_eagle3_ext.patches.base import resolve_owner

    out = {}
    for p in ALL_PATCHES:
        for t in p.targets:
            try:
                owner, attr = resolve_owner(t.path)
            except NotApplicable:
                continue
            out[t.path] = vars(owner).get(attr, "<absent>") if isinstance(owner, (type, types.ModuleType)) \
                else getattr(owner, attr, "<absent>")
    return out


def test_real_patches_apply_idempotently_and_revert_exactly():
    import sglang.srt.models.llama_eagle3  # noqa: F401  (deferred targets imported: all patches act)
    import sglang.srt.models.qwen2  # noqa: F401

    revert_all()
    before = _declared_values()
    apply_all()
    applied = {p.name for p in ALL_PATCHES if p.status == APPLIED}
    assert {"tree_ops", "draft_dtype", "eagle3_capture.Qwen2ForCausalLM", "server_info"} <= applied
    after = _declared_values()
    assert after != before
    for p in ALL_PATCHES:  # a second real application (another copy of the plugin) wraps nothing twice
        p.status = None
    apply_all()
    for path, value in _declared_values().items():
        chain, fn = [], value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
        while fn is not None and len(chain) < 10:
            chain.append(getattr(fn, WRAPPED_MARK, None))
            fn = getattr(fn, "__wrapped__", None)
        marks = [m for m in chain if m]
        assert len(marks) == len(set(marks)), f"{path} wrapped twice: {marks}"
    revert_all()
    assert _declared_values() == before
    apply_all()  # leave the process as the plugin would


def test_tree_ops_rebinds_every_by_value_copy():
    import importlib

    from sglang_eagle3_ext.patches import BY_NAME

    tree = BY_NAME["tree_ops"]
    tree.revert()
    originals = {}
    for mod_name in ("sglang.srt.speculative.eagle_utils", "sglang.kernels.ops.speculative.spec_tree"):
        mod = importlib.import_module(mod_name)
        for name in ("verify_tree_greedy_func", "build_tree_kernel_efficient_func"):
            if hasattr(mod, name):
                originals[f"{mod_name}.{name}"] = getattr(mod, name)
    assert tree.run() == APPLIED
    stale = [f"{m.__name__}.{n}" for m in list(sys.modules.values()) if isinstance(m, types.ModuleType)
             for n, v in list(vars(m).items()) if any(v is o for o in originals.values())]
    assert stale == [], f"modules still holding SGLang's tree ops: {stale}"


PINNED_FRESH = {  # in a fresh process, right after the plugin loads (no model imported yet)
    "llm_alias": APPLIED, "draft_checks": APPLIED, "cpu_rotary": APPLIED, "cpu_cache_locs": APPLIED,
    "cpu_piecewise_graph": SKIPPED, "cpu_spec_overlap": SKIPPED, "cpu_draft_embed": PENDING,
    "mla_q_proj": PENDING, "eagle3_capture.Qwen2ForCausalLM": PENDING,
    "eagle3_capture.LlamaForCausalLM": PENDING, "eagle3_capture.Glm4MoeForCausalLM": PENDING,
    "eagle3_capture.Glm4MoeLiteForCausalLM": PENDING, "eagle3_capture.DeepseekV2ForCausalLM": PENDING,
    "eagle3_capture.GlmMoeDsaForCausalLM@glm4_moe": PENDING,
    "eagle3_capture.GlmMoeDsaForCausalLM@glm_moe_dsa": SKIPPED, "draft_dtype": PENDING,
    "tree_ops": APPLIED, "eagle_sample.penalties": APPLIED, "tree_attention": SKIPPED, "fp8_moe_shards": APPLIED, "fp8_moe_kernel": SKIPPED,
    "server_info": APPLIED, "spec_metrics": APPLIED, "metrics_setup": PENDING, "selfcheck.http": PENDING,
    "selfcheck.engine": PENDING, "selfcheck.state": APPLIED, "openai_stream_logprobs": PENDING,
}


@pytest.mark.skipif(not on_pinned_sglang(), reason="statuses pinned for the SGLang that CI installs")
def test_pinned_sglang_statuses_before_and_after_the_deferred_imports():
    r = run_python("""
        import importlib, json
        from sglang_eagle3_ext.patches import ALL_PATCHES, apply_all
        fresh = apply_all()
        for p in ALL_PATCHES:
            if p.on_import:
                try:
                    importlib.import_module(p.on_import)
                except ImportError:
                    pass
        print(json.dumps({"fresh": fresh, "later": {p.name: p.status for p in ALL_PATCHES},
                          "details": {p.name: p.detail for p in ALL_PATCHES}}))
    """)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["fresh"] == PINNED_FRESH, out["details"]
    later = {k: (APPLIED if v == PENDING else v) for k, v in PINNED_FRESH.items()}
    later["eagle3_capture.GlmMoeDsaForCausalLM@glm4_moe"] = APPLIED
    assert out["later"] == later, out["details"]


def test_doctor_targets_finds_every_required_target_and_exits_zero():
    r = subprocess.run([sys.executable, "-m", "sglang_eagle3_ext", "doctor", "--targets", "--json"],
                       capture_output=True, text=True, timeout=600, cwd="/")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rep = json.loads(r.stdout)
    assert rep["ok"] and [p["name"] for p in rep["patches"]] == [p.name for p in ALL_PATCHES]
    for p in rep["patches"]:
        assert p["verdict"] in ("would apply", "not wanted", "not present"), p
        if p["verdict"] == "would apply":
            missing = [t for t in p["targets"] if not t["optional"] and t["state"] != "found"]
            assert missing == [], p


def test_compat_says_cannot_apply_when_a_target_moved():
    from sglang_eagle3_ext.doctor import compat

    moved = Patch("moved", "x", lambda p: p.wrap("sglang.srt.server_args:ServerArgs.no_such_hook", None),
                  targets=[Target("sglang.srt.server_args:ServerArgs.no_such_hook")])
    rep = compat([moved])
    assert not rep["ok"] and rep["patches"][0]["verdict"] == "cannot apply"
    assert rep["patches"][0]["targets"][0]["state"] == "missing"
