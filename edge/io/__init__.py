"""Audio to and from files: WAV reading and writing with resampling (``wav``), atomic writes (``atomic``),
generated test audio (``synthetic``) and signal measures (``quality``). Imports only the DSP's constants."""
