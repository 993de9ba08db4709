"""Deployment as Pi owners live it (issue 14): the `percepnet` ALSA PCM, the device-only distribution."""

import ctypes
import ctypes.util
import importlib.machinery
import importlib.util
import os
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FRAGMENT = REPO / "systemd" / "asound-percepnet.conf"
SYSTEM_ALSA_CONF = Path("/usr/share/alsa/alsa.conf")


def _package():
    loader = importlib.machinery.SourceFileLoader("package_script", str(REPO / "scripts" / "package"))
    spec = importlib.util.spec_from_loader("package_script", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def libasound():
    name = ctypes.util.find_library("asound")
    if name is None:
        pytest.skip("libasound2 is not installed")
    return ctypes.CDLL(name)


def alsa_definition(lib, path, name):
    """ALSA's own parse of ``path`` and its expansion of the PCM ``name`` (with arguments), as text."""
    config, stream = ctypes.c_void_p(), ctypes.c_void_p()
    assert lib.snd_config_top(ctypes.byref(config)) == 0
    assert lib.snd_input_stdio_open(ctypes.byref(stream), str(path).encode(), b"r") == 0
    loaded = lib.snd_config_load(config, stream)
    lib.snd_input_close(stream)
    if loaded < 0:
        return loaded, None
    found, out, text = ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_char_p()
    if lib.snd_config_search_definition(config, b"pcm", name.encode(), ctypes.byref(found)) < 0:
        return loaded, None
    lib.snd_output_buffer_open(ctypes.byref(out))
    lib.snd_config_save(found, out)
    size = lib.snd_output_buffer_string(out, ctypes.byref(text))
    return loaded, ctypes.string_at(text, size).decode()


def test_the_asound_fragment_parses_and_names_the_loopbacks_capture_side(libasound, tmp_path):
    loaded, default = alsa_definition(libasound, FRAGMENT, "percepnet")
    assert loaded == 0
    assert "type plug" in default and "card Loopback" in default and "device 1" in default
    assert "subdevice 0" in default                               # the daemon writing hw:Loopback,0,0
    _, third = alsa_definition(libasound, FRAGMENT, "percepnet:3")
    assert "subdevice 3" in third
    broken = tmp_path / "broken.conf"                             # ALSA refuses what does not parse
    broken.write_text(FRAGMENT.read_text().replace("type plug", "type plug {"))
    assert alsa_definition(libasound, broken, "percepnet")[0] < 0


def test_the_percepnet_pcm_opens_the_loopback_card(tmp_path):
    """Through pyalsaaudio and the system's alsa.conf: a known name that needs the Loopback card (absent here)."""
    pytest.importorskip("alsaaudio", reason="pyalsaaudio is not installed")
    if not SYSTEM_ALSA_CONF.exists():
        pytest.skip(f"{SYSTEM_ALSA_CONF} not found (libasound2-data)")
    from edge.devices.sound_devices import sound_cards
    if "Loopback" in sound_cards().values():
        pytest.skip("this machine has the Loopback card: the PCM would open")
    probe = textwrap.dedent("""
        import alsaaudio
        try:
            alsaaudio.PCM(alsaaudio.PCM_CAPTURE, device="percepnet:1")
        except alsaaudio.ALSAAudioError as exc:
            print(exc)
    """)

    def open_error(config_path):
        env = {**os.environ, "ALSA_CONFIG_PATH": config_path}
        return subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True).stdout

    assert open_error(f"{SYSTEM_ALSA_CONF}:{FRAGMENT}").startswith("No such device [percepnet:1]")   # the card
    assert open_error(str(SYSTEM_ALSA_CONF)).startswith("No such file or directory [percepnet:1]")  # unknown


@pytest.fixture(scope="module")
def device_wheel(tmp_path_factory):
    return _package().build_wheel(tmp_path_factory.mktemp("dist"))


def test_the_device_distribution_holds_the_edge_package_and_no_host_code(device_wheel):
    """Issue 14 item 4, on the built distribution's file list: what the installer installs."""
    with zipfile.ZipFile(device_wheel) as archive:
        names = archive.namelist()
        entry_points = archive.read("percepnet_edge-0.1.0.dist-info/entry_points.txt").decode()
    packages = {name.split("/")[0] for name in names}
    assert packages == {"edge", "percepnet_edge-0.1.0.dist-info"}
    assert not [n for n in names if n.startswith(("training/", "converter/", "evaluation/")) or n.endswith(".keras")]
    assert {"edge/commands/cli.py", "edge/daemon/loop.py", "edge/dsp/enhancer.py", "edge/devices/pipewire.py"} <= set(names)
    assert "percepnet-edge = edge.commands.cli:main" in entry_points and "percepnet-train" not in entry_points


def test_the_device_distribution_requires_no_scipy(device_wheel):
    """scipy is 120 MB installed for aarch64, more than numpy and LiteRT together (docs/dependencies.md)."""
    with zipfile.ZipFile(device_wheel) as archive:
        metadata = archive.read("percepnet_edge-0.1.0.dist-info/METADATA").decode()
    requires = [line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    unconditional = [r.split(";")[0].strip() for r in requires if "extra ==" not in r]
    assert sorted(r.split(">")[0].split("=")[0].lower() for r in unconditional) == ["numpy", "pyyaml"], requires
    assert not [r for r in requires if r.lower().startswith("scipy")], requires


def test_the_packaging_check_refuses_host_code(tmp_path):
    """What wheel_problems would say of a distribution built from the development pyproject (all packages)."""
    wheel = tmp_path / "percepnet_edge-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name in ("edge/commands/cli.py", "training/train.py", "converter/__init__.py", "evaluation/peers.py",
                     "models/lite/percepnet_lite.keras"):
            archive.writestr(name, "")
        archive.writestr("percepnet_edge-0.1.0.dist-info/entry_points.txt",
                         "[console_scripts]\npercepnet-train = training.cli:main\n")
    problems = _package().wheel_problems(wheel)
    assert sum("host code" in p for p in problems) == 4 and any("host command" in p for p in problems)


def test_the_bundle_takes_only_models_that_passed_the_converters_proof(tmp_path, capsys):
    """`rglob('*.tflite')` took the comparison variants (float32 among them) and would take a failed conversion."""
    import hashlib
    import json
    models = tmp_path / "models"
    for name, verification in (("lite/percepnet_lite", {"passed": True}), ("lite/percepnet_lite.failed",
                               {"passed": False}), ("lite/variants/percepnet_lite_float32", {}),
                               ("lite_echo/unfinished", None)):
        (models / name).parent.mkdir(parents=True, exist_ok=True)
        (models / f"{name}.tflite").write_bytes(b"TFL3")
        if verification is not None:
            (models / f"{name}.json").write_text(json.dumps({"verification": verification,
                                                             "sha256": hashlib.sha256(b"TFL3").hexdigest()}))
    (models / "lite" / "MODEL_CARD.md").write_text("card")
    package = _package()
    kept = package.device_models(tmp_path / "bundle", models)
    assert sorted(map(str, kept)) == ["models/lite/MODEL_CARD.md", "models/lite/percepnet_lite.json",
                                      "models/lite/percepnet_lite.tflite"]
    said = capsys.readouterr().out
    for skipped, why in (("lite/percepnet_lite.failed.tflite", "a conversion under proof or one that failed it"),
                         ("lite/variants/percepnet_lite_float32.tflite", "a comparison variant"),
                         ("lite_echo/unfinished.tflite", "its sidecar does not say it passed the converter's proof")):
        assert f"skipped {skipped}: {why}" in said
    (models / "lite" / "percepnet_lite.tflite").write_bytes(b"TFL3, converted again")     # the old sidecar stays
    with pytest.raises(package.PackageError, match=r"cannot be shipped \(its sidecar describes another model"):
        package.device_models(tmp_path / "bundle3", models)
    (models / "lite" / "percepnet_lite.json").write_text(json.dumps({"verification": {"passed": False}}))
    with pytest.raises(package.PackageError, match=r"the default model .*percepnet_lite.tflite cannot be shipped \(its "
                                                   "sidecar does not say it passed"):
        package.device_models(tmp_path / "bundle2", models)


def test_the_device_package_runs_without_the_host_packages(device_wheel, tmp_path):
    """The built wheel, unpacked beside this venv's third-party packages (no editable install, no checkout on the
    path) with scipy barred: every edge module imports, `denoise` resamples a 16 kHz file, and bench says why it
    skips RNNoise, whose adapter is host code."""
    with zipfile.ZipFile(device_wheel) as archive:
        archive.extractall(tmp_path / "device")
    script = textwrap.dedent("""
        import importlib, importlib.util, pkgutil, sys
        sys.modules["scipy"] = None                 # a device installs no scipy: importing it now fails
        assert [importlib.util.find_spec(n) for n in ("training", "converter", "evaluation")] == [None] * 3
        import edge
        assert edge.__file__.startswith(sys.argv[1]), edge.__file__
        for module in pkgutil.walk_packages(edge.__path__, "edge."):
            importlib.import_module(module.name)
        from edge.commands.cli import main
        from edge.io import synthetic
        from edge.io.wav import write_wav
        write_wav("in16k.wav", synthetic.demo_mixture(1.0)[1], 16000)
        assert main(["denoise", "in16k.wav", "out16k.wav", "--model", sys.argv[2]]) == 0
        sys.exit(main(["bench", "--seconds", "1", "--rounds", "1"]))
    """)
    path = os.pathsep.join([str(tmp_path / "device"), sysconfig.get_paths()["purelib"],
                            sysconfig.get_paths()["platlib"]])
    model = REPO / "models" / "lite" / "percepnet_lite.tflite"
    result = subprocess.run([sys.executable, "-S", "-c", script, str(tmp_path / "device"), str(model)], cwd=tmp_path,
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": path}, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "skipped RNNoise: its adapter, evaluation.peers, is host code and not part of a device install" \
        in result.stdout


def test_the_echo_speaker_fragment_parses_and_pairs_the_loopback_directions(libasound):
    fragment = REPO / "systemd" / "asound-percepnet-speaker.conf"
    loaded, speaker = alsa_definition(libasound, fragment, "percepnet_speaker_mix")
    assert loaded == 0
    assert "type dmix" in speaker and "device 1" in speaker and "rate 48000" in speaker and "period_size 480" in speaker
    _, reference = alsa_definition(libasound, fragment, "percepnet_speaker_ref")
    assert "card Loopback" in reference and "device 0" in reference          # the same cable, other direction
    _, plug = alsa_definition(libasound, fragment, "percepnet_speaker")
    assert "percepnet_speaker_mix" in plug
