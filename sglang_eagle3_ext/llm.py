"""`sgl.LLM`: SGLang's offline Engine under the name users expect (vLLM-style `model=` accepted)."""

from sglang.srt.entrypoints.engine import Engine


class LLM(Engine):
    """Exactly sglang.Engine; `model=` is accepted as an alias of `model_path=`."""

    def __init__(self, model=None, **kwargs):
        if model is not None:
            if kwargs.get("model_path") not in (None, model):
                raise TypeError("sgl.LLM: pass either model= or model_path=, not both")
            kwargs["model_path"] = model
        super().__init__(**kwargs)
