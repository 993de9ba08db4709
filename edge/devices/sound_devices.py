"""Why an ALSA device does not open, said with the command that fixes it.

ALSA's own errors are terse (``No such device [hw:Loopback,0,0]``). The
daemon's log, its ``STATUS=`` line and ``check`` use :func:`explain` instead,
which looks at what the machine has: the sound cards (``/proc/asound/cards``),
whether ``snd-aloop`` is loaded, and which processes hold a busy card
(``/proc/PID/fd`` links to ``/dev/snd/pcmC*``). Every lookup reads under a
``proc`` root, so tests point it at a fake tree.
"""

import contextlib
import os
import re
import sys
import tempfile
from pathlib import Path

#: The loopback card's ALSA id, as systemd/snd-aloop.modprobe.conf sets it.
LOOPBACK_CARD = "Loopback"
#: Installed by systemd/install.sh: loads snd-aloop at every boot.
MODULES_LOAD_FILE = "/etc/modules-load.d/percepnet-edge.conf"
#: Installed by systemd/install.sh: the friendly `percepnet` capture PCM.
ASOUND_FRAGMENT = "/etc/alsa/conf.d/60-percepnet-edge.conf"
#: Processes that hold sound cards on desktop systems: their answer is the PipeWire set-up.
SOUND_SERVERS = ("pipewire", "wireplumber", "pulseaudio", "jackd")
DOCS = "docs/microphone.md"


def sound_cards(proc="/proc"):
    """``{index: id}`` of the sound cards the kernel has; empty without ALSA."""
    cards = {}
    try:
        text = (Path(proc) / "asound" / "cards").read_text()
    except OSError:
        return cards
    for match in re.finditer(r"^\s*(\d+)\s+\[(\S+)\s*\]", text, re.MULTILINE):
        cards[int(match.group(1))] = match.group(2)
    return cards


def card_of(device):
    """The card a PCM name points at (``hw:1,0`` -> "1", ``plughw:CARD=Headset`` -> "Headset"), or None."""
    if ":" not in device:
        return None
    args = device.split(":", 1)[1].split(",")
    for arg in args:
        if arg.startswith("CARD="):
            return arg[5:].strip("'\"")
    return None if "=" in args[0] else args[0].strip("'\"")


def device_numbers(device, cards):
    """``(card index, device number)`` of a hw-style name when the card exists, else None."""
    card = card_of(device)
    if card is None:
        return None
    index = int(card) if card.isdigit() else next((i for i, name in cards.items() if name == card), None)
    if index not in cards:
        return None
    args = device.split(":", 1)[1].split(",")
    dev = next((a[4:] for a in args if a.startswith("DEV=")), None)
    if dev is None:
        dev = args[1] if len(args) > 1 and "=" not in args[1] else "0"
    return (index, int(dev)) if dev.isdigit() else None


def holders(kind, numbers, proc="/proc"):
    """``[(pid, name)]`` of processes holding the PCM node (``numbers`` None: any PCM node) open."""
    suffix = "c" if kind == "capture" else "p"
    wanted = f"/dev/snd/pcmC{numbers[0]}D{numbers[1]}{suffix}" if numbers else None
    found = []
    for entry in sorted(Path(proc).glob("[0-9]*"), key=lambda p: int(p.name)):
        try:
            links = [os.readlink(fd) for fd in (entry / "fd").iterdir()]
        except OSError:                       # gone, or not ours to look at
            continue
        if any(link == wanted if wanted else link.startswith("/dev/snd/pcmC") for link in links):
            try:
                name = (entry / "comm").read_text().strip()
            except OSError:
                name = "?"
            found.append((int(entry.name), name))
    return found


def explain(kind, device, error, proc="/proc"):
    """``cannot open KIND device 'DEVICE': ALSA's error; what is wrong; the command that fixes it``."""
    head = f"cannot open {kind} device {device!r}: {error}"
    cards = sound_cards(proc)
    card = card_of(device)
    listing = ", ".join(f"{i} [{name}]" for i, name in sorted(cards.items())) or "none"
    lister = "arecord -l" if kind == "capture" else "aplay -l"
    if "busy" in error.lower():
        return f"{head}; {_busy(kind, device, cards, proc)}"
    if card is not None and card.lower() == LOOPBACK_CARD.lower() and LOOPBACK_CARD not in cards.values():
        return (f"{head}; the snd-aloop module is not loaded (no {LOOPBACK_CARD} card; cards: {listing}): "
                f"run `sudo modprobe snd-aloop`; systemd/install.sh adds {MODULES_LOAD_FILE} so that it loads "
                "at every boot")
    if card is not None and card not in cards.values() and not (card.isdigit() and int(card) in cards):
        return (f"{head}; there is no sound card {card!r} (cards: {listing}): plug it in, or pick a card from "
                f"`{lister}` and set audio.{kind}_device")
    if device in ("default", "sysdefault"):
        return (f"{head}; ALSA's default device cannot {'capture' if kind == 'capture' else 'play'} here "
                f"(cards: {listing}): set audio.{kind}_device to a name from `{lister}`, e.g. 'plughw:CARD=ID'")
    if device == "percepnet" or device.startswith("percepnet:"):
        return f"{head}; the `percepnet` PCM is not defined: install {ASOUND_FRAGMENT} (sudo systemd/install.sh)"
    if device == "pipewire" or device.startswith("pipewire:"):
        if "no such file" in error.lower():
            return (f"{head}; ALSA has no `pipewire` PCM: install PipeWire's ALSA plugin "
                    "(`sudo apt-get install pipewire-alsa`)")
        return (f"{head}; is PipeWire running for this user? `systemctl --user status pipewire`; run the daemon "
                "in that user's session (the user unit, see docs/microphone.md)")
    if card is None and "no such file" in error.lower():
        return f"{head}; ALSA knows no PCM named {device!r}: `{lister.replace('-l', '-L')}` lists the names"
    return head


def _busy(kind, device, cards, proc):
    numbers = device_numbers(device, cards)
    found = holders(kind, numbers, proc)
    if not found:
        return ("another program holds it (none visible to this user; `sudo fuser -v /dev/snd/*` shows "
                "which): stop it, or share the card through a dsnoop/dmix PCM")
    who = ", ".join(f"{name} (pid {pid})" for pid, name in found)
    if any(name in SOUND_SERVERS for _, name in found):
        return (f"held by {who}: this system runs a sound server that owns the card; use the PipeWire set-up "
                f"({DOCS}#pipewire), or stop it for that user: `systemctl --user stop pipewire.socket "
                "pipewire-pulse.socket wireplumber pipewire pipewire-pulse`")
    return f"held by {who}: stop that program first (or share the card through a dsnoop/dmix PCM)"


def plug_name(device):
    """The rate-converting name for a hw device (``hw:1,0`` -> ``plughw:1,0``), or None when there is none."""
    return "plug" + device if device.startswith("hw:") else None


@contextlib.contextmanager
def library_messages():
    """Catch what C libraries print on stderr (``ALSA lib confmisc.c:165:(...) Cannot get card index for 5``)
    while a device opens, so that a report can fold it into its own sentence instead of 24 raw lines.

    Yields a list that holds the captured lines once the block ends. Redirects file descriptor 2 of the whole
    process: for one-shot commands (``check``), not for the daemon's threads.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    lines = []
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(sink.read(64 * 1024).decode(errors="replace").splitlines())


def said_by_alsa(lines, most=3):
    """The distinct messages in captured ALSA lines, without their source-file prefix: what ``check`` quotes."""
    said = []
    for line in lines:
        text = re.sub(r"^ALSA lib [^ ]+:\d+:\([^)]*\)\s*", "", line.strip())
        if text and text not in said:
            said.append(text)
    return said[:most]
