"""The network on the device: the LiteRT runner (``engine``), the interpreter and its delegate (``litert``) and
the metadata that ties a flatbuffer to its features (``model_meta``). Knows nothing of devices or the daemon."""
