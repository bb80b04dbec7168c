"""The startup self-check and the live guard on a real server with a broken draft/target pairing;
plus their decision logic on its own."""

import json
import logging
import os
import shutil

import pytest

from server import Server
from sglang_eagle3_ext import selfcheck
from sglang_eagle3_ext.errors import Eagle3ConfigError
from sglang_eagle3_ext.live_guard import LiveGuard

BROKEN_ENV = {"SGLANG_EAGLE3_EXT_SELFCHECK_TOKENS": "8", "SGLANG_EAGLE3_EXT_GUARD_WINDOW": "8"}


@pytest.fixture(scope="module")
def wrong_d2t_draft(models, tmp_path_factory):
    """The agreeing draft with its d2t vocab map zeroed (identity): a realistic wrong-d2t draft.

    It still proposes the token after the current one, but as a draft id, which without the map
    is the current target token again: almost never right."""
    import torch
    from safetensors.torch import load_file, save_file

    out = str(tmp_path_factory.mktemp("models") / "wrong-d2t-draft")
    shutil.copytree(models["agreeing_draft"], out)
    path = os.path.join(out, "model.safetensors")
    weights = load_file(path)
    weights["d2t"] = torch.zeros_like(weights["d2t"])
    save_file(weights, path)
    return out


@pytest.fixture(scope="module")
def warned(models, wrong_d2t_draft, tmp_path_factory):
    log = tmp_path_factory.mktemp("logs") / "warn.log"
    env = dict(BROKEN_ENV, SGLANG_EAGLE3_EXT_SELFCHECK="warn")
    with Server(models["bigram_target"], wrong_d2t_draft, log_path=log, env=env) as s:
        info = json.loads(s.get("/get_server_info"))
        metrics = s.get("/metrics")
    return dict(info=info, metrics=metrics, log=log.read_text())


def test_broken_pairing_logs_the_warning_and_serves(warned, models, wrong_d2t_draft):
    result = warned["info"]["internal_states"][0]["eagle3_ext"]["selfcheck"]
    assert result["status"] == "failed" and result["mode"] == "warn", result
    assert result["accept_length"] < selfcheck.DEFAULT_MIN_ACCEPT_LENGTH
    lines = [l for l in warned["log"].splitlines() if "SELF-CHECK FAILED" in l]
    assert len(lines) == 1, warned["log"][-3000:]
    line = lines[0]
    assert "d2t" in line and "aux layer ids" in line  # the likely causes
    assert f"python -m sglang_eagle3_ext check --target {models['bigram_target']} --draft {wrong_d2t_draft}" in line
    passed = [l for l in warned["metrics"].splitlines() if l.startswith("sglang:eagle3_selfcheck_passed{")]
    assert passed and passed[0].endswith(" 0.0")


def test_live_guard_logs_once_when_below_break_even(warned):
    lines = [l for l in warned["log"].splitlines() if "speculation is not paying off" in l]
    assert len(lines) == 1, lines  # the probes alone fill several 8-step windows; logged once
    assert "below the break-even" in lines[0] and "accept length 1.0" in lines[0]


def test_strict_mode_fails_startup_with_a_clear_message(models, wrong_d2t_draft, tmp_path):
    log = tmp_path / "strict.log"
    server = Server(models["bigram_target"], wrong_d2t_draft, log_path=log,
                    env=dict(BROKEN_ENV, SGLANG_EAGLE3_EXT_SELFCHECK="strict"))
    with pytest.raises(RuntimeError, match="server exited"):
        with server:
            pass
    assert server.proc.returncode == selfcheck.STRICT_EXIT_CODE
    text = log.read_text()
    assert "SELF-CHECK FAILED" in text
    assert "startup aborted by the self-check (SGLANG_EAGLE3_EXT_SELFCHECK=strict)" in text


# The offline engine (sgl.LLM / sgl.Engine) runs the same check from its constructor.

def test_engine_selfcheck_passes_a_good_pairing_twice_in_one_process_with_metrics(models, monkeypatch):
    """Two sgl.Engine, one after the other in one process, metrics on: the self-check's gauges are
    this process's, created once (a second engine used to raise DuplicateTimeseries), and the
    second engine's self-check sets them again."""
    from isolated import run_engines

    monkeypatch.setenv(selfcheck.MODE_ENV, "strict")
    monkeypatch.setenv(selfcheck.TOKENS_ENV, "8")
    call = ((models["bigram_target"], models["agreeing_draft"]),
            dict(prompts=["Hi"], max_new_tokens=4, enable_metrics=True))
    runs = run_engines({"first": call, "second": call})
    assert runs["first"]["pid"] == runs["second"]["pid"]
    for run in runs.values():
        result = run["server_info"]["internal_states"][0]["eagle3_ext"]["selfcheck"]
        assert result["status"] == "passed" and result["mode"] == "strict", result
        assert result["probes"] == len(selfcheck.PROBES) and result["accept_length"] >= 1.5
        assert "sglang:eagle3_selfcheck_accept_length" in run["series"], run["series"]


def test_engine_strict_selfcheck_raises_from_the_constructor(models, wrong_d2t_draft, monkeypatch):
    from isolated import run_engine

    monkeypatch.setenv(selfcheck.MODE_ENV, "strict")
    monkeypatch.setenv(selfcheck.TOKENS_ENV, "8")
    with pytest.raises(Eagle3ConfigError, match=r"SELF-CHECK FAILED.*d2t.*startup aborted by the "
                                                r"self-check; SGLANG_EAGLE3_EXT_SELFCHECK=warn"):
        run_engine(models["bigram_target"], wrong_d2t_draft, prompts=["Hi"], max_new_tokens=4)


# The decision logic on its own (no server).

def test_measure_and_judge_use_sglangs_counts():
    metas = [{"meta_info": {"spec_verify_ct": 10, "spec_num_correct_drafts": 10}},
             {"meta_info": {"spec_verify_ct": 6, "spec_num_correct_drafts": 0}}]
    m = selfcheck.measure(metas, num_draft_tokens=4)
    assert m["accept_length"] == pytest.approx(1 + 10 / 16) and m["draft_tokens"] == 48
    assert m["accept_rate"] == pytest.approx(m["accept_length"] / 4)
    assert selfcheck.judge(m, 1.1)["status"] == "passed"
    assert selfcheck.judge(m, 1.7)["status"] == "failed"
    assert selfcheck.judge(selfcheck.measure([{"meta_info": {}}], 4), 1.1)["status"] == "unavailable"


def test_settings_off_switch_and_bad_values(monkeypatch):
    monkeypatch.setenv(selfcheck.MODE_ENV, "off")
    assert selfcheck.settings()[0] == "off"
    monkeypatch.setenv(selfcheck.MODE_ENV, "sometimes")
    with pytest.raises(Eagle3ConfigError, match="warn, strict, off"):
        selfcheck.settings()
    monkeypatch.setenv(selfcheck.MODE_ENV, "strict")
    monkeypatch.setenv(selfcheck.MIN_ENV, "one")
    with pytest.raises(Eagle3ConfigError, match="SELFCHECK_MIN_ACCEPT_LENGTH='one' is invalid: use a number"):
        selfcheck.settings()


def test_selfcheck_off_sends_nothing(monkeypatch):
    class Args:  # what run() reads from SGLang's ServerArgs before it would send a probe
        speculative_algorithm = "EAGLE3"

    monkeypatch.setenv(selfcheck.MODE_ENV, "off")
    assert selfcheck.run(Args())["status"] == "off"  # returns before _post_probes (no url to call)


def test_unreadable_setting_aborts_before_any_probe(monkeypatch):
    class Args:
        speculative_algorithm = "EAGLE3"

    def probe(tokens):
        raise AssertionError("no probe may be sent")

    def abort(message):
        raise Eagle3ConfigError(message)

    monkeypatch.setenv(selfcheck.MODE_ENV, "sometimes")
    with pytest.raises(Eagle3ConfigError, match="SGLANG_EAGLE3_EXT_SELFCHECK='sometimes'"):
        selfcheck.run(Args(), probe=probe, abort=abort)


def test_live_guard_break_even_once_and_rearm(caplog):
    guard = LiveGuard(window=4)
    for _ in range(4):
        guard.add_time(draft_s=0.003, verify_s=0.002)  # break-even (3 + 2) / 2 = 2.5
    assert guard.break_even == pytest.approx(2.5)
    with caplog.at_level(logging.WARNING, logger="sglang_eagle3_ext"):
        guard.add_steps([1, 1, 1])  # 1 accepted: accept length 2
        assert guard.check() is None  # window not full yet
        guard.add_steps([1])
        line = guard.check()
        assert line and "accept length 2.00" in line and "break-even 2.50" in line
        guard.add_steps([1, 1, 1, 1])
        assert guard.check() is None  # still below: logged once
        guard.add_steps([3, 3, 3, 3])
        assert guard.check() is None  # recovered (accept length 4 >= 2.5): re-armed
        guard.add_steps([0, 0, 0, 0])
        assert guard.check()
    assert sum("not paying off" in r.message for r in caplog.records) == 2
    assert LiveGuard(window=4, break_even=1.5).break_even == 1.5
    assert LiveGuard(window=0).check() is None  # 0 turns the guard off
