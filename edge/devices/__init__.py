"""Sound devices: ALSA PCMs and their locks (``alsa``), why a device does not open (``sound_devices``) and
PipeWire's nodes (``pipewire``). Knows nothing of the model or the daemon."""
