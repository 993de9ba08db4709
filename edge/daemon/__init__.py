"""The real-time daemon: the audio loop and what keeps it running.

``loop`` (capture -> enhance -> playback against a deadline), ``config`` (the YAML schema), ``policy``
(overruns), ``reloader`` (SIGHUP), ``control`` (signals), ``sdnotify`` (systemd), ``telemetry``,
``event_log`` and ``frame_times``. Imports the model, the devices, io and the DSP; never a command.
"""
