# Copied into the host's site directory by install.sh. SGLang 0.5.16 registers config classes
# with transformers' auto mappings that transformers 5.x already ships; registering twice raises.
# Let a re-registration of an existing key pass (exist_ok=True), as a matching pair of versions does.
try:
    from transformers.models.auto import auto_factory as _af
    from transformers.models.auto import configuration_auto as _ca

    for _cls in (_ca._LazyConfigMapping, _af._LazyAutoMapping):
        _orig = _cls.register

        def _register(self, key, value, exist_ok=False, _orig=_orig):
            return _orig(self, key, value, exist_ok=True)

        _cls.register = _register
except Exception as _e:  # noqa: BLE001 -- a startup hook must never stop the interpreter
    print("offline-gpu sitecustomize: transformers shim not applied:", _e)
