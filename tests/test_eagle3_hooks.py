"""The hooks adapter's feature detection on real SGLang decoder layers (its states are checked
against transformers end to end in test_eagle3_capture.py[granite])."""

import types

import pytest
import torch

from sglang_eagle3_ext.patches.eagle3_hooks import _arg_reader, install


def test_reads_hidden_and_residual_from_a_classic_layer_call():
    from sglang.srt.models.granite import GraniteDecoderLayer

    read = _arg_reader(GraniteDecoderLayer)
    hidden, residual, positions = torch.ones(2, 4), torch.full((2, 4), 3.0), torch.arange(2)
    assert read((positions, hidden, None, residual), {}) == (hidden, residual)
    assert read((positions,), {"hidden_states": hidden, "forward_batch": None,
                               "residual": residual}) == (hidden, residual)
    assert read((positions, hidden, None), {})[1] is None  # first layer: no residual yet


def test_a_layer_loop_without_residual_argument_is_refused_at_startup():
    from sglang.srt.models.qwen2 import Qwen2DecoderLayer

    if _arg_reader(Qwen2DecoderLayer) is not None:
        pytest.skip("this SGLang's Qwen2 layers still take the residual")
    layer = Qwen2DecoderLayer.__new__(Qwen2DecoderLayer)
    model = types.SimpleNamespace(model=types.SimpleNamespace(layers=[layer]))
    with pytest.raises(ValueError, match="do not take the residual.*set_eagle3_layers_to_capture"):
        install(model, [1], record=None)
