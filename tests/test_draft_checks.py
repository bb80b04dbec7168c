"""Bad draft input fails at startup with one clear line, through the real SGLang entry points."""

import json
import os
import subprocess
import sys
import time

import pytest

from sglang_eagle3_ext.pairing_check import check_speculative_args
from sglang_eagle3_ext.errors import Eagle3ConfigError


def server_args(**kw):
    from sglang.srt.server_args import ServerArgs

    return ServerArgs(speculative_algorithm="EAGLE3", **kw)


def test_missing_draft_path(models):
    with pytest.raises(Eagle3ConfigError, match="draft path '/nonexistent/draft' does not exist"):
        check_speculative_args(server_args(model_path=models["target"],
                                           speculative_draft_model_path="/nonexistent/draft"))


def test_draft_folder_without_config(models, tmp_path):
    with pytest.raises(Eagle3ConfigError, match="has no config.json"):
        check_speculative_args(server_args(model_path=models["target"],
                                           speculative_draft_model_path=str(tmp_path)))


def test_unreadable_draft_config(models, tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(Eagle3ConfigError, match="cannot be read"):
        check_speculative_args(server_args(model_path=models["target"],
                                           speculative_draft_model_path=str(tmp_path)))


def test_draft_that_is_not_eagle3(models):
    with pytest.raises(Eagle3ConfigError, match=r"is not an EAGLE-3 model \(architectures=\['Qwen2ForCausalLM'\]\)"):
        check_speculative_args(server_args(model_path=models["target"],
                                           speculative_draft_model_path=models["target"]))


def test_eagle3_without_draft():
    with pytest.raises(Eagle3ConfigError, match="needs a draft"):
        check_speculative_args(server_args(model_path="x"))


def test_eagle_with_an_eagle3_draft_is_upgraded(models, caplog):
    args = server_args(model_path=models["target"], speculative_draft_model_path=models["random_draft"])
    args.speculative_algorithm = "EAGLE"
    check_speculative_args(args)
    assert args.speculative_algorithm == "EAGLE3"
    assert "upgraded to EAGLE3" in caplog.text


def test_good_pairing_passes(models):
    args = server_args(model_path=models["bigram_target"], speculative_draft_model_path=models["agreeing_draft"])
    check_speculative_args(args)
    assert args.speculative_algorithm == "EAGLE3"


def test_engine_raises_before_loading_anything(models):
    import sglang as sgl

    from sglang_eagle3_ext.cpu_defaults import CPU_ENGINE_ARGS, EAGLE3_ARGS

    start = time.monotonic()
    with pytest.raises(Eagle3ConfigError, match="is not an EAGLE-3 model"):
        sgl.LLM(model=models["target"], speculative_draft_model_path=models["target"],
                **dict(CPU_ENGINE_ARGS, **EAGLE3_ARGS))
    assert time.monotonic() - start < 60


def draft_with_repeated_aux_ids(models, tmp_path):
    import shutil

    draft = tmp_path / "draft"
    shutil.copytree(models["random_draft"], draft)
    cfg = json.loads((draft / "config.json").read_text())
    cfg["eagle_config"]["eagle_aux_hidden_state_layer_ids"] = [0, 1, 1]
    (draft / "config.json").write_text(json.dumps(cfg))
    return str(draft)


def test_pairing_is_validated_at_startup(models, tmp_path):
    args = server_args(model_path=models["target"],
                       speculative_draft_model_path=draft_with_repeated_aux_ids(models, tmp_path))
    with pytest.raises(Eagle3ConfigError, match="repeat"):
        check_speculative_args(args)


@pytest.mark.parametrize("draft,expected", [
    ("/nonexistent/draft", "draft path '/nonexistent/draft' does not exist"),
    ("TARGET", "is not an EAGLE-3 model"),
    ("REPEATED_IDS", "repeat"),
])
def test_launch_server_prints_one_error_line_and_exits(models, tmp_path, draft, expected):
    from sglang_eagle3_ext.cpu_defaults import CPU_ENGINE_ARGS, EAGLE3_ARGS, as_cli

    if draft == "TARGET":
        draft = models["target"]
    elif draft == "REPEATED_IDS":
        draft = draft_with_repeated_aux_ids(models, tmp_path)
    cmd = [sys.executable, "-m", "sglang.launch_server", "--model-path", models["target"],
           "--speculative-draft-model-path", draft, "--host", "127.0.0.1", "--port", "39123",
           *as_cli(dict(CPU_ENGINE_ARGS, **EAGLE3_ARGS))]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd="/",
                       env=dict(os.environ, TRITON_INTERPRET="1"))
    assert r.returncode != 0
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    errors = [line for line in r.stderr.splitlines() if "sglang-eagle3-ext: error:" in line]
    assert len(errors) == 1 and expected in errors[0], r.stderr[-3000:]
