"""Daemon configuration: strict validation with messages that name key, value and what is allowed."""

from pathlib import Path

import pytest

from edge.daemon.config import Config, ConfigError, load, parse

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("name", sorted(path.stem for path in CONFIGS.glob("*.yaml")))
def test_shipped_configs_load_and_point_at_a_shipped_model_path(name):
    config = load(CONFIGS / f"{name}.yaml")
    assert config.model_path().name.endswith(".tflite")
    assert config.model_path().parent.parent.resolve() == (CONFIGS.parent / "models").resolve()


def test_empty_config_is_the_documented_defaults():
    assert Config().model_path() == (CONFIGS.parent / "models" / "lite" / "percepnet_lite.tflite").resolve()
    assert load(CONFIGS / "default.yaml").model == Config().model
    config = parse("")
    assert config.audio == Config().audio and config.realtime.overrun_policy == "hold"
    from edge.dsp import EnhancerSettings
    assert config.enhancer_settings() == EnhancerSettings()           # one set of defaults
    assert load(CONFIGS / "default.yaml").dsp == Config().dsp         # and default.yaml states them


@pytest.mark.parametrize("text, message", [
    ("audio: [1, 2", "not valid YAML"),
    ("- just a list", "the top level must be a mapping"),
    ("audoi: {}", "audoi: unknown section; allowed sections: audio, model, dsp, realtime, telemetry"),
    ("audio: {rate: 44100}", "audio.rate: unknown key; allowed keys in audio:"),
    ("audio: {sample_format: S24_LE}", "audio.sample_format: 'S24_LE' is not allowed; expected one of S16_LE, S32_LE, FLOAT_LE"),
    ("audio: {capture_channels: 2, channel_index: 2}", "audio.channel_index: 2 is not allowed; expected 0..1"),
    ("audio: {buffer_periods: 'four'}", "audio.buffer_periods: 'four' is not allowed; expected an integer"),
    ("model: {xnnpack: 'yes'}", "model.xnnpack: 'yes' is not allowed; expected true or false"),
    ("dsp: {max_attenuation_db: -5}", "dsp.max_attenuation_db: -5.0 is not allowed; expected 0..100 dB"),
    ("dsp: {lookahead_frames: 3}", "dsp.lookahead_frames: 3 is not allowed; expected 2"),
    ("realtime: {overrun_policy: skip}", "realtime.overrun_policy: 'skip' is not allowed; expected one of bypass, hold, drop-model, off"),
    ("realtime: {sched_fifo_priority: 120}", "realtime.sched_fifo_priority: 120 is not allowed; expected null (off) or 1..99"),
    ("realtime: {cpu_affinity: [a]}", "realtime.cpu_affinity: ['a'] is not allowed"),
    ("telemetry: {http_port: 70000}", "telemetry.http_port: 70000 is not allowed; expected null (off) or a TCP port"),
    # Issue 15 item 8: a host that can never be bound is refused at load time, not by a gaierror at run time.
    ("telemetry: {http_host: 999.1.1.1}", "telemetry.http_host: '999.1.1.1' is not allowed; expected an IP address"),
    ("telemetry: {http_host: metrics.example.com}", "telemetry.http_host: 'metrics.example.com' is not allowed"),
    # Issue 15 item 9: booleans are not integers, and CPU numbers are bounded.
    ("realtime: {sched_fifo_priority: true}", "realtime.sched_fifo_priority: True is not allowed; expected null (off) or 1..99"),
    ("telemetry: {http_port: true}", "telemetry.http_port: True is not allowed; expected null (off) or a TCP port"),
    ("realtime: {cpu_affinity: [true]}", "realtime.cpu_affinity: [True] is not allowed"),
    ("realtime: {cpu_affinity: [99999]}", "realtime.cpu_affinity: [99999] is not allowed"),
    ("dsp: {gain_release_per_frame: true}", "dsp.gain_release_per_frame: True is not allowed"),
    ("dsp: {gain_exponent: 0.5}", "dsp.gain_exponent: 0.5 is not allowed; expected 1..3"),
    ("dsp: {comfort_noise_db: 6}", "dsp.comfort_noise_db: 6 is not allowed; expected -60..0 dB relative to the "
                                   "input's background, or null (off)"),
    ("dsp: {comfort_noise_db: loud}", "dsp.comfort_noise_db: 'loud' is not allowed"),
    ("echo: {comfort_noise_db: -70}", "echo.comfort_noise_db: -70 is not allowed; expected -60..0 dB"),
    # values PyYAML builds with Python's own parsers raised ValueError/KeyError/AttributeError: tracebacks
    ("audio: {capture_device: 2024-13-45}", "not valid YAML: a value that cannot be read (ValueError: month must"),
    ("realtime: {deadline_ms: !!float abc}", "not valid YAML: a value that cannot be read (ValueError"),
    ("model: {xnnpack: !!bool maybe}", "not valid YAML: a value that cannot be read (KeyError"),
    ("audio: {capture_device: !!timestamp abc}", "not valid YAML: a value that cannot be read"),
    ("audio: {buffer_periods: 1" + "0" * 4400 + "}", "not valid YAML: a value that cannot be read (ValueError"),
    ("realtime: {deadline_ms: 1" + "0" * 400 + "}", "realtime.deadline_ms: an integer of 401 digits is not allowed"),
    # PyYAML keeps the last of two equal keys: a second section silently dropped every device the first one set
    ("audio:\n  buffer_periods: 4\n  buffer_periods: 8\n", "buffer_periods is given twice in one mapping (line 3)"),
    ("audio: {capture_device: hw:0}\naudio: {playback_device: hw:1}\n", "audio is given twice in one mapping (line 2)"),
    ("realtime: {overrun_policy: off}", "expected a string (YAML reads an unquoted on, off, yes or no as true or "
                                        "false: quote it, 'off')"),
    ("audio: {capture_device: ''}", "audio.capture_device: '' is not allowed; expected a non-empty name"),
    ("audio: {playback_device: '  '}", "audio.playback_device: '  ' is not allowed; expected a non-empty name"),
    ("model: {path: ''}", "model.path: '' is not allowed; expected a non-empty name"),
    ("telemetry: {sysfs_root: ''}", "telemetry.sysfs_root: '' is not allowed; expected a folder"),
    ("[]", "the top level must be a mapping"),
    ("0", "the top level must be a mapping"),
    ("false", "the top level must be a mapping"),
])
def test_bad_configs_name_the_key_the_value_and_what_is_allowed(text, message):
    with pytest.raises(ConfigError) as error:
        parse(text)
    assert message in str(error.value)


def test_yaml_errors_are_one_line():
    with pytest.raises(ConfigError) as error:
        parse("audio:\n\tx: 1\n")
    assert "not valid YAML" in str(error.value) and "\n" not in str(error.value)


def test_a_file_of_comments_only_is_the_defaults():
    assert parse("# nothing set yet\n").audio == Config().audio


def test_comfort_noise_is_off_by_default_and_set_in_db():
    assert parse("").enhancer_settings().comfort_noise_db is None
    assert parse("dsp: {comfort_noise_db: -20}").enhancer_settings().comfort_noise_db == -20
    settings = parse("echo: {comfort_noise_db: 0}").enhancer_settings()
    assert settings.far_end_comfort_noise_db == 0 and settings.comfort_noise_db is None


def test_null_turns_the_release_limit_off():
    assert parse("dsp: {gain_release_per_frame: null}").enhancer_settings().gain_release_per_frame is None


def test_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the config"):
        load(tmp_path / "nope.yaml")


def test_an_empty_config_anywhere_uses_the_shipped_model(tmp_path):
    """Issue 15 item 9: the default model path does not depend on where the config file lives."""
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "audio-only.yaml").write_text("audio: {capture_device: hw:1}\n")
    shipped = (CONFIGS.parent / "models" / "lite" / "percepnet_lite.tflite").resolve()
    assert load(tmp_path / "empty.yaml").model_path() == shipped
    assert load(tmp_path / "audio-only.yaml").model_path() == shipped
    (tmp_path / "own.yaml").write_text("model: {path: models/mine.tflite}\n")      # a given path stays relative
    assert load(tmp_path / "own.yaml").model_path() == (tmp_path / "models" / "mine.tflite").resolve()


def test_a_config_that_is_too_big_or_not_text_is_a_clear_error_naming_the_file(tmp_path):
    """Issue 15 item 8: a binary file names itself; a huge one (or /dev/zero) is refused, not read into memory."""
    binary = tmp_path / "config.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ConfigError, match=rf"{binary}: not a text file .*UTF-8"):
        load(binary)
    big = tmp_path / "big.yaml"
    big.write_text("# padding\n" * 200_000)
    with pytest.raises(ConfigError, match=rf"{big}: larger than 64 KiB"):
        load(big)
    with pytest.raises(ConfigError, match=rf"{tmp_path / 'keys.yaml'}: audio.rate: unknown key"):
        (tmp_path / "keys.yaml").write_text("audio: {rate: 44100}\n")
        load(tmp_path / "keys.yaml")


def test_check_on_dev_zero_is_a_clear_error_not_a_memory_error():
    """Issue 15 item 8: `check --config /dev/zero` (memory capped, so that a regression cannot eat the machine)."""
    import subprocess
    import sys
    limit = "import resource; resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30)); "
    run = "from edge.commands.cli import main; raise SystemExit(main(['check', '--config', '/dev/zero']))"
    result = subprocess.run([sys.executable, "-c", limit + run], cwd=CONFIGS.parent, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "[FAIL] config: /dev/zero: is a device, not a regular file" in result.stdout
    assert "Traceback" not in result.stderr


#: Issue 24 item 1: 429 bytes whose anchors expand to about 10^9 list items.
BILLION_LAUGHS = "\n".join(["a: &a [1,1,1,1,1,1,1,1,1,1]"] + [
    f"{chr(ord('b') + i)}: &{chr(ord('b') + i)} [" + ",".join([f"*{chr(ord('a') + i)}"] * 10) + "]"
    for i in range(8)] + ["realtime: {cpu_affinity: *i}"]) + "\n"


def test_a_billion_laughs_config_is_refused_quickly_in_little_memory(tmp_path):
    """Issue 24 item 1: the alias-expanded size is counted before anything is built or formatted (under a 1 GiB
    address-space limit, in a subprocess, as `check` and as a SIGHUP reload would load it)."""
    import subprocess
    import sys
    path = tmp_path / "laughs.yaml"
    path.write_text(BILLION_LAUGHS)
    assert len(BILLION_LAUGHS) < 600
    limit = "import resource; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30)); "
    run = f"from edge.commands.cli import main; raise SystemExit(main(['check', '--config', {str(path)!r}]))"
    result = subprocess.run([sys.executable, "-c", limit + run], cwd=CONFIGS.parent, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "more than 10000 values once its anchors and aliases are expanded" in result.stdout
    assert "Traceback" not in result.stderr and len(result.stdout) < 1000


def test_deeply_nested_yaml_is_a_one_line_error_not_a_recursion_error():
    """Issue 24 item 9: 5,000 nested brackets were a RecursionError inside PyYAML."""
    with pytest.raises(ConfigError, match="nested more than 20 levels deep"):
        parse("audio: " + "[" * 5000 + "]" * 5000)
    with pytest.raises(ConfigError, match="recursive structure|more than"):
        parse("a: &a [*a]\n")


def test_messages_never_format_an_unbounded_value():
    """Issue 24 item 1: a value is shown cut to a few dozen characters and items, however big it is."""
    with pytest.raises(ConfigError) as error:
        parse("realtime: {cpu_affinity: [" + ",".join(["-1"] * 5000) + "]}")
    assert len(str(error.value)) < 300 and "..." in str(error.value)
    with pytest.raises(ConfigError) as error:
        parse("audio: {sample_format: " + "x" * 50_000 + "}")
    assert len(str(error.value)) < 300
    with pytest.raises(ConfigError, match="unknown key"):
        parse("audio: {1: 2, a: 3}")                           # mixed key types were a TypeError in sorted()


@pytest.mark.parametrize("value, shown", [('"pe\\0cap"', "U+0000"), ('"\\ud800"', "U+D800"),
                                          ('"a\\nb"', "U+000A")])
def test_control_characters_and_lone_surrogates_are_refused_by_name(value, shown):
    """Issue 24 item 9: `capture_device: "pe\\0cap"` was a ValueError traceback, "\\ud800" a UnicodeEncodeError."""
    with pytest.raises(ConfigError) as error:
        parse(f"audio: {{capture_device: {value}}}")
    message = str(error.value)
    assert message.startswith("audio.capture_device: ") and shown in message
    message.encode("utf-8")                                    # printable: no lone surrogate in the message


def test_a_fifo_config_without_a_writer_is_given_up_on_not_waited_on_for_good(tmp_path, monkeypatch):
    """Issue 24 (smaller): SIGHUP while the config path was a FIFO left one thread blocked in open() per SIGHUP.
    A FIFO is read within CONFIG_FIFO_WAIT_S (shortened here); a device is refused at once."""
    import os
    import threading
    from edge.daemon import config as config_module
    monkeypatch.setattr(config_module, "CONFIG_FIFO_WAIT_S", 0.5)
    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)
    outcome = []
    worker = threading.Thread(target=lambda: outcome.append(_error_of(load, fifo)), daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "load() blocked on a FIFO without a writer"
    assert "is a FIFO, and no complete config came through it within 0.5 s" in outcome[0]
    assert "is a device, not a regular file" in _error_of(load, "/dev/null")


def _error_of(function, *args):
    try:
        function(*args)
    except ConfigError as exc:
        return str(exc)
    return "no error"



def test_the_echo_section_is_documented_with_its_defaults_and_checked():
    assert load(CONFIGS / "default.yaml").echo == Config().echo
    assert not Config().echo.enabled
    with pytest.raises(ConfigError, match="echo.reference_device: None is not allowed; expected the ALSA PCM"):
        parse("echo: {enabled: true}")
    with pytest.raises(ConfigError, match="echo.tail_ms: 5.0 is not allowed; expected 10..500 ms"):
        parse("echo: {tail_ms: 5}")
    with pytest.raises(ConfigError, match="echo.reference_device: 3 is not allowed"):
        parse("echo: {reference_device: 3}")
    config = parse("echo: {enabled: true, reference_device: pe_reference, tail_ms: 100, delay_search_ms: 0}")
    settings = config.echo_settings()
    assert (settings.tail_ms, settings.delay_search_ms, settings.residual_suppression) == (100.0, 0.0, True)
    assert settings.drift_compensation and not parse("echo: {drift_compensation: false}").echo_settings().drift_compensation
    with pytest.raises(ConfigError, match="echo.drift_compensation: 'yes' is not allowed; expected true or false"):
        parse("echo: {drift_compensation: 'yes'}")


def test_every_key_of_every_section_is_in_default_yaml():
    import dataclasses
    text = (CONFIGS / "default.yaml").read_text()
    for section in dataclasses.fields(Config):
        if section.name == "source":
            continue
        assert f"\n{section.name}:" in "\n" + text, section.name
        for key in dataclasses.fields(section.default_factory()):
            assert f"  {key.name}:" in text, f"{section.name}.{key.name} is not documented in configs/default.yaml"
