"""The daemon on PipeWire, through PipeWire's ALSA plugin (the ``pipewire`` PCM of pipewire-alsa).

``systemd/pipewire-percepnet-edge.conf`` (installed in
``/etc/pipewire/pipewire.conf.d/``) makes a loopback: a sink the daemon plays
into (:data:`INPUT_NODE`) and a source that apps record from, ``Denoised
microphone`` (:data:`DENOISED_NODE`, ``media.class = Audio/Source``).

Capture ``pipewire`` follows the default microphone (WirePlumber moves the
stream when the default changes); ``pipewire:NODE=<node.name>`` takes a
configured one. The daemon's two streams share one ``node.link-group``, which
WirePlumber reads as "a filter": it never links the capture to a source fed by
the same group's playback, so even with "Denoised microphone" chosen as the
default, the daemon keeps listening to a real microphone instead of itself.

A stream whose configured node is missing is linked by WirePlumber to the
default one instead (the enhanced microphone would go to the speakers), so the
daemon refuses to open until the node exists (:func:`check_targets`), as it
waits for any missing device.
"""

import json
import os
import re
import shutil
import subprocess
import time

from edge.dsp.constants import HOP_SAMPLES, SAMPLE_RATE_HZ
from edge.errors import DeviceError, MissingDependencyError

#: The fragment's sink, where the daemon plays the enhanced audio.
INPUT_NODE = "percepnet-edge.input"
#: The fragment's source, "Denoised microphone", that apps record from.
DENOISED_NODE = "percepnet-edge.denoised"
FRAGMENT = "/etc/pipewire/pipewire.conf.d/percepnet-edge.conf"
ENV = "PIPEWIRE_ALSA"
#: pw-dump answers in tens of milliseconds. An open asks it twice (the devices, then the echo reference), with a
#: watchdog ping between (AlsaDuplex.keepalive), and each step with its PCM opens must end well inside the unit's
#: WatchdogSec=5: a PipeWire server that does not answer in time fails the open, which is retried and logged,
#: where a longer wait would have had systemd kill the daemon.
PW_DUMP_TIMEOUT_S = 2
#: pw-dump is asked this many times before its output counts as unreadable: a change in the graph while it dumps
#: (a stream that opens or closes) can cut its output, which is then not JSON. Seen on the PipeWire lab under load,
#: where it made the echo reference's open fail for a retry's wait.
PW_DUMP_ATTEMPTS = 3


class PipeWireError(DeviceError):
    """PipeWire cannot serve the configured devices (server unreachable, or a node missing); nothing was opened."""


def uses_pipewire(device):
    return device == "pipewire" or device.startswith("pipewire:")


def target_node(device):
    """The node a ``pipewire:NODE=name`` PCM names, or None (follows the default)."""
    if not uses_pipewire(device):
        return None
    match = re.search(r"(?:^|[:,])NODE=([^,]+)", device)
    return match.group(1).strip("'\"") if match else None


def stream_properties(instance=None):
    """The properties of the daemon's streams, for PIPEWIRE_ALSA (SPA-JSON)."""
    name = f"percepnet-edge.{instance}" if instance else "percepnet-edge"
    return (f'{{ node.name = "{name}" node.description = "percepnet-edge denoiser" '
            f'node.link-group = "{name}" node.latency = "{HOP_SAMPLES}/{SAMPLE_RATE_HZ}" }}')


def _inside_braces(current):
    """The properties of a PIPEWIRE_ALSA value without its outer braces ("" for none)."""
    current = (current or "").strip()
    return (current[1:-1] if current.startswith("{") and current.endswith("}") else current).strip()


def environment(instance=None, current=None):
    """PIPEWIRE_ALSA's value: ours, then any the user set (which win, being later)."""
    ours, inner = stream_properties(instance), _inside_braces(current)
    return f"{ours[:-1].rstrip()} {inner} }}" if inner else ours


def side_stream_environment(current, role, capture_sink=False):
    """PIPEWIRE_ALSA for one of the echo path's streams: ``role`` "reference", or "forward" for the copy
    played to the loudspeaker (not "speaker": percepnet-edge.speaker is the virtual sink's name).

    Each gets its own node name and link group (``<the daemon's name>.<role>``), so that it is told apart
    from the microphone streams and not taken for part of their filter. The reference records a *sink*
    (what apps play into the "Echo-cancelled speaker"): without ``stream.capture.sink`` pipewire-alsa
    links it to the default source instead. Neither is moved to another node when its own goes
    (``node.dont-reconnect``): WirePlumber would move the forwarded copy to the default sink, which is the
    "Echo-cancelled speaker" the reference records (a feedback loop, seen on the test lab). Pinned, it is linked
    nowhere else (WirePlumber ends it), its writes fail, and the daemon closes the echo path and reopens it when
    the node is back.
    """
    inner = _inside_braces(current)
    match = re.search(r'node\.name\s*=\s*"([^"]+)"', inner)
    name = f"{match.group(1) if match else 'percepnet-edge'}.{role}"
    extra = (f'node.name = "{name}" node.link-group = "{name}" node.description = "percepnet-edge echo {role}" '
             'node.dont-reconnect = true')
    if capture_sink:
        extra += " stream.capture.sink = true"
    return f"{{ {inner} {extra} }}"


def pinned_environment(current):
    """PIPEWIRE_ALSA for a stream that names its node (``pipewire:NODE=...``): not moved to another node when that
    one goes. WirePlumber moves such a stream to the default node, and on the test lab a microphone's capture
    stream landed on the "Echo-cancelled speaker" (the loudspeaker's feed, taken for the microphone, nothing
    logged); pinned, it is linked nowhere else (WirePlumber ends it), its reads fail, and the daemon reopens it
    once the node is back."""
    return f"{{ {_inside_braces(current)} node.dont-reconnect = true }}"


def node_names(run=subprocess.run):
    """The ``node.name`` of every node of the PipeWire server this user reaches (through ``pw-dump``)."""
    if shutil.which("pw-dump") is None:
        raise MissingDependencyError("pw-dump is missing, which checks the PipeWire nodes: "
                                     "`sudo apt-get install pipewire-bin`")
    deadline = time.monotonic() + PW_DUMP_TIMEOUT_S          # one limit for all the attempts
    for _ in range(PW_DUMP_ATTEMPTS):
        try:
            result = run(["pw-dump"], capture_output=True, text=True,
                         timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise PipeWireError(f"PipeWire did not answer pw-dump within {PW_DUMP_TIMEOUT_S} s") from None
        if result.returncode != 0:
            where = os.environ.get("XDG_RUNTIME_DIR") or "no XDG_RUNTIME_DIR set"
            raise PipeWireError(f"PipeWire is not reachable ({where}; pw-dump: {result.stderr.strip()[:200]}): run "
                                "the daemon in the desktop user's session (`systemctl --user enable --now "
                                "percepnet-edge@pipewire`, see docs/microphone.md), and check as that user")
        try:
            objects = json.loads(result.stdout or "[]")
            break
        except ValueError:
            continue
    else:
        text = result.stdout.strip()
        raise PipeWireError(f"pw-dump printed something that is not JSON {PW_DUMP_ATTEMPTS} times in a row (it "
                            f"starts {text[:60]!r} and ends {text[-60:]!r}); check that `pw-dump` works as this "
                            "user")
    return {props["node.name"] for obj in objects
            for props in [((obj.get("info") or {}).get("props") or {})] if "node.name" in props}


def check_targets(audio, run=subprocess.run):
    """Raise PipeWireError when a configured PipeWire node is missing (else WirePlumber silently picks another)."""
    problem = missing_target({"capture device": audio.capture_device, "playback device": audio.playback_device}, run)
    if problem is not None:
        raise PipeWireError(problem)


def missing_target(devices, run=subprocess.run):
    """Why one of ``devices`` ({what: PCM name or None}) cannot be served: the first PipeWire node one of them
    names that is missing, or None. Raises what :func:`node_names` raises when PipeWire cannot be asked."""
    wanted = [(what, node) for what, device in devices.items() if device is not None
              for node in [target_node(device)] if node]
    if not wanted:
        return None
    names = node_names(run)
    for what, node in wanted:
        if node in names:
            continue
        if node.startswith("percepnet-edge."):
            return (f"PipeWire has no node {node!r} for the {what}: the fragment {FRAGMENT} is not loaded; install "
                    "it (sudo systemd/install.sh) and restart PipeWire (`systemctl --user restart pipewire`)")
        return (f"PipeWire has no node {node!r} for the {what} (unplugged?); `wpctl status` lists the devices and "
                "`pw-cli ls Node` their node.name")
    return None
