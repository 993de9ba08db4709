"""The daemon's import footprint: what its modules load, in a fresh interpreter (issue 23).

Resident memory is the scarce resource on a 512 MB board, and most of it is
imports: ``scipy.signal`` alone is 78 MB. The daemon's path must load none of
the modules on :data:`DENY`, and neither may the file commands, which a device
runs too and which resample (:mod:`edge.dsp.polyphase`): a device installs no
scipy (docs/dependencies.md). Host-side code (training, evaluation) may, lazily.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge.echo import speex_mdf

REPO = Path(__file__).resolve().parents[1]

#: Modules the daemon must never load, with what each costs or why it is wrong there.
DENY = {
    "scipy": "78 MB resident for scipy.signal; the DSP and the demo use edge.dsp.iir",
    "matplotlib": "plots are for `profile` on a host",
    "tensorflow": "the device runs LiteRT; TensorFlow is the host's converter",
    "keras": "training only",
    "pandas": "evaluation only",
    "sklearn": "not used on the device",
}

#: Every module the daemon (`run`, its demo and `check`) imports.
DAEMON_MODULES = ["edge.commands.run", "edge.daemon.loop", "edge.model.engine", "edge.devices.alsa",
                  "edge.devices.sound_devices", "edge.daemon.telemetry", "edge.io.synthetic", "edge.io.wav",
                  "edge.commands.files", "edge.dsp", "edge.echo", "edge.daemon.metrics_http"]


def loaded_after(code):
    """Top-level module names loaded by a fresh interpreter after running ``code``."""
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted({name.split('.')[0] for name in sys.modules})))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_the_daemons_modules_load_nothing_on_the_deny_list():
    loaded = loaded_after("\n".join(f"import {name}" for name in DAEMON_MODULES))
    assert "numpy" in loaded                                    # the probe sees real imports
    assert not loaded & DENY.keys(), {name: DENY[name] for name in loaded & DENY.keys()}


def test_the_enhancer_and_the_demo_audio_run_without_scipy():
    code = ("import numpy as np\n"
            "from edge.dsp import Enhancer\n"
            "from edge.io import synthetic\n"
            "clean, noisy = synthetic.demo_mixture(1.0)\n"
            "enhancer = Enhancer()\n"
            "for frame in noisy[:48000 // 480 * 480].reshape(-1, 480): enhancer.process(frame)\n"
            "from edge.io.wav import write_wav\n"
            "import tempfile, os\n"
            "write_wav(os.path.join(tempfile.mkdtemp(), 'x.wav'), noisy, 48000)\n")
    loaded = loaded_after(code)
    assert not loaded & DENY.keys(), {name: DENY[name] for name in loaded & DENY.keys()}


def _denoise_at_other_rates(folder, far_end):
    """A probe that runs `denoise` (with a far end: `denoise --far-end`) on 16 and 44.1 kHz files in folder."""
    return ("from edge.io import synthetic\n"
            "from edge.io.wav import write_wav\n"
            "from edge.commands.cli import main\n"
            "clean, noisy = synthetic.demo_mixture(1.0)\n"
            "for rate in (16000, 44100):\n"
            f"    write_wav(f'{folder}/in{{rate}}.wav', noisy, rate)\n"
            f"    write_wav(f'{folder}/far{{rate}}.wav', 0.5 * clean, rate)\n"
            f"    far = ['--far-end', f'{folder}/far{{rate}}.wav'] if {far_end} else []\n"
            f"    assert main(['denoise', f'{folder}/in{{rate}}.wav', f'{folder}/out{{rate}}.wav'] + far) == 0\n")


def test_denoise_at_other_rates_loads_no_scipy(tmp_path):
    """The file commands resample in numpy (edge.dsp.polyphase): 16 kHz and 44.1 kHz in and out."""
    loaded = loaded_after(_denoise_at_other_rates(tmp_path, far_end=False))
    assert "edge" in loaded
    assert (tmp_path / "out16000.wav").stat().st_size > 2 * 16000
    assert (tmp_path / "out44100.wav").stat().st_size > 2 * 44100
    assert not loaded & DENY.keys(), {name: DENY[name] for name in loaded & DENY.keys()}


@pytest.mark.skipif(not speex_mdf.available(), reason="libspeexdsp.so.1 is not installed "
                    "(sudo apt-get install libspeexdsp1; .ci/run installs it)")
def test_denoise_with_a_far_end_at_other_rates_loads_no_scipy(tmp_path):
    """The echo stage's reference is resampled too (and the echo stage itself never loads scipy)."""
    loaded = loaded_after(_denoise_at_other_rates(tmp_path, far_end=True))
    assert "edge" in loaded and (tmp_path / "out44100.wav").stat().st_size > 2 * 44100
    assert not loaded & DENY.keys(), {name: DENY[name] for name in loaded & DENY.keys()}


def test_the_probe_would_catch_a_denied_import():
    assert "scipy" in loaded_after("import edge.dsp\nfrom scipy import signal")
