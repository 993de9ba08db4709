"""The echo test set: smart-speaker and intercom rooms where the device hears what it plays (issue 21).

Each clip (48 kHz, mono, 16-bit, default 10 s) is written as ``NAME.mic.wav`` (what the
microphone records), ``NAME.far.wav`` (what the loudspeaker was asked to play: the
canceller's reference), ``NAME.near.wav`` (the near talker as the microphone hears it,
the PESQ reference) and ``NAME.echo.wav``; ``set.json`` lists every clip's recipe.

What goes into a clip, and why:

- **Talk types**: far-end single talk (``st``: echo only), double talk (``dt``: echo and a
  near talker), near-end single talk (``nst``: the far end is silent).
- **Far end**: speech (corpus validation split, RAVDESS actors 17-18) or music (Debian game
  music packages); **near end**: speech of other validation actors (19-20). Nothing on the
  held-out lists of DATA-MORE.md / DATA-NOISE.md (RAVDESS 21-24 are refused outright).
- **Rooms**: simulated shoeboxes (pyroomacoustics, RT60 0.2-0.6 s) and two measured rooms
  (``small_room``, ``medium_room`` of the team's recorded RIRs, whose direct path is re-placed
  at the device's distance and whose reverberation is scaled to it).
- **Device**: smart speaker (loudspeaker 5-25 cm from the microphone, echo 10-20 dB above the
  near talker) or intercom/TV (0.5-2 m, echo 0-10 dB above).
- **Loudspeaker**: a small driver's high-pass (2nd order, 150-400 Hz) and amplifier clipping
  (3-9 dB of overdrive into a hard limit, then a soft tanh): the echo is not a linear function
  of the reference, as on real devices.
- **System delay** of 5-100 ms before the echo, and in half the clips an **echo path change**
  at 5-6 s (the device is moved: a new distance and position, same room).
- Microphone noise at -65 dBFS.
"""

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
from scipy.signal import fftconvolve

from edge.errors import DataError
from edge.io.wav import resample, write_wav
from training.echo_synth import loudspeaker          # one loudspeaker model for the test set and training

FS = 48_000
CORPUS = Path("/work/extdata/corpus")
MUSIC = Path("/work/extdata/sources/music")
MEASURED_RIRS = Path(__file__).resolve().parents[2] / "shared" / "data" / "rir" / "recorded"
MEASURED_ROOMS = ("small_room", "medium_room")
FAR_ACTORS = ("actor-17", "actor-18")
NEAR_ACTORS = ("actor-19", "actor-20")
HELD_OUT_ACTORS = ("actor-21", "actor-22", "actor-23", "actor-24")
TALK_TYPES = ("st", "dt", "nst")
DEVICES = {"smart-speaker": ((0.05, 0.25), (10.0, 20.0)),      # distance m, echo above near talker dB
           "intercom": ((0.5, 2.0), (0.0, 10.0))}
NEAR_DBFS = -26.0
NOISE_DBFS = -65.0
SPEED_OF_SOUND = 343.0


def _rms(x):
    return float(np.sqrt(np.mean(x ** 2)) + 1e-12)


def _set_dbfs(x, dbfs):
    return x * (10 ** (dbfs / 20) / _rms(x))


class Sources:
    """Speech of the validation actors and music excerpts, read lazily from the corpus and the music folder."""

    def __init__(self, corpus=CORPUS, music=MUSIC):
        import soundfile
        self.soundfile = soundfile
        manifest = Path(corpus) / "manifest.csv"
        if not manifest.is_file():
            raise DataError(f"{manifest}: no corpus manifest; build the corpus (docs/corpus.md) or pass --corpus")
        self.speech = {}
        with open(manifest, newline="") as stream:
            for row in csv.DictReader(stream):
                if row["split"] != "validation" or row["group"] != "acted-en-48k":
                    continue
                if row["speaker"] in HELD_OUT_ACTORS:
                    raise DataError(f"{manifest}: held-out speaker {row['speaker']} in the validation split")
                self.speech.setdefault(row["speaker"], []).append(Path(corpus) / row["path"])
        missing = [a for a in FAR_ACTORS + NEAR_ACTORS if not self.speech.get(a)]
        if missing:
            raise DataError(f"{manifest}: no validation speech of {', '.join(missing)}")
        self.music = sorted(p for p in Path(music).rglob("*.ogg"))
        if not self.music:
            raise DataError(f"{music}: no .ogg music found (Debian's *-music packages unpacked there)")

    def _read(self, path):
        audio, rate = self.soundfile.read(str(path), dtype="float64", always_2d=True)
        return resample(audio.mean(axis=1), rate, FS)

    def talker(self, actors, seconds, rng, gap_s=(0.1, 0.4)):
        """Utterances of one actor back to back with short pauses, -26 dBFS while active."""
        files = self.speech[actors[rng.integers(len(actors))]]
        parts, n = [], 0
        while n < seconds * FS:
            x = self._read(files[rng.integers(len(files))])
            x = _set_dbfs(x, NEAR_DBFS)
            pause = np.zeros(int(rng.uniform(*gap_s) * FS))
            parts += [x, pause]
            n += x.size + pause.size
        return np.concatenate(parts)[:int(seconds * FS)]

    def music_excerpt(self, seconds, rng):
        for _ in range(20):
            x = self._read(self.music[rng.integers(len(self.music))])
            if x.size > (seconds + 20) * FS:
                start = rng.integers(10 * FS, x.size - int(seconds * FS) - 10 * FS)
                return _set_dbfs(x[start:start + int(seconds * FS)], NEAR_DBFS)
        raise DataError("no music file is long enough for the clip")


OVERDRIVE_DB = (3.0, 9.0)


def simulated_room(rng):
    """A shoebox (dimensions, RT60) as a function of (speaker, mic) positions -> RIR at 48 kHz."""
    import pyroomacoustics as pra
    dims = np.array([rng.uniform(3, 7), rng.uniform(3, 5), rng.uniform(2.4, 3.0)])
    rt60 = float(rng.uniform(0.2, 0.6))
    absorption, max_order = pra.inverse_sabine(rt60, dims)
    max_order = min(max_order, 12)                 # beyond ~12 reflections: a smooth tail, and cost grows fast

    def rir(source, mic):
        room = pra.ShoeBox(dims, fs=FS, materials=pra.Material(absorption), max_order=max_order,
                           air_absorption=False)
        room.add_source(source)
        room.add_microphone(np.array(mic)[:, None])
        room.compute_rir()
        return np.asarray(room.rir[0][0])[:int(0.6 * FS)]

    return rir, {"room": "simulated", "dims_m": [round(float(d), 2) for d in dims], "rt60_s": round(rt60, 2)}


def _positions(dims, distance, rng):
    """A device (mic) away from the walls, the loudspeaker ``distance`` from it, a talker 1-2 m away."""
    mic = np.array([rng.uniform(1.0, dims[0] - 1.0), rng.uniform(1.0, dims[1] - 1.0), rng.uniform(0.8, 1.5)])
    for _ in range(100):
        direction = rng.standard_normal(3)
        direction[2] *= 0.3
        speaker = mic + direction / np.linalg.norm(direction) * distance
        if np.all(speaker > 0.1) and np.all(speaker < dims - 0.1):
            break
    talker = np.clip(mic + np.array([rng.uniform(1, 2), rng.uniform(-1, 1), 0.3]), 0.3, dims - 0.3)
    return mic, speaker, talker


def measured_room(name, folder, rng):
    """A measured RIR; the direct path is re-placed at the device's distance and the reverb scaled to it."""
    import soundfile
    path = Path(folder) / f"{name}.wav"
    if not path.is_file():
        raise DataError(f"{path}: measured RIR missing (../shared/data/rir/recorded); pass --rirs")
    audio, rate = soundfile.read(str(path), dtype="float64", always_2d=True)
    h = resample(audio[:, 0], rate, FS)
    peak = int(np.argmax(np.abs(h)))
    tail = h[peak + int(0.002 * FS):int(peak + 0.6 * FS)]
    tail = tail / np.sqrt(np.sum(tail ** 2))
    critical_distance_m = 0.7          # where direct and reverberant energy are equal in a living room

    def rir(distance):
        direct = int(round(distance / SPEED_OF_SOUND * FS))
        out = np.zeros(direct + int(0.002 * FS) + tail.size)
        out[direct] = 1.0 / max(distance, 0.05)
        out[direct + int(0.002 * FS):] = tail * out[direct] * distance / critical_distance_m
        return out

    return rir, {"room": f"measured {name}"}


def _path_for(room_kind, room, distance, rng, dims=None):
    if room_kind == "simulated":
        mic, speaker, talker = _positions(np.array(dims), distance, rng)
        return room(speaker, mic), room(talker, mic)
    return room(distance), None


def build_clip(sources, talk_type, index, rng, seconds, rirs_folder, overdrive_range_db=OVERDRIVE_DB):
    device = ("smart-speaker", "intercom")[index % 2]
    content = ("speech", "music")[(index // 2) % 2]
    path_change = index % 4 in (1, 2) and talk_type != "nst"
    (distance_range, echo_above_range) = DEVICES[device]
    n = int(seconds * FS)
    recipe = {"talk_type": talk_type, "device": device, "far_content": content if talk_type != "nst" else None}
    if index % 3 == 2:
        room_name = MEASURED_ROOMS[(index // 3) % len(MEASURED_ROOMS)]
        room, info = measured_room(room_name, rirs_folder, rng)
        kind, dims = "measured", None
    else:
        room, info = simulated_room(rng)
        kind, dims = "simulated", info["dims_m"]
    recipe.update(info)
    distance = float(rng.uniform(*distance_range))
    h_echo, h_near = _path_for(kind, room, distance, rng, dims)
    delay_ms = float(rng.uniform(5, 100))
    recipe.update({"distance_m": round(distance, 2), "system_delay_ms": round(delay_ms, 1)})

    far = sources.talker(FAR_ACTORS, seconds, rng) if content == "speech" else sources.music_excerpt(seconds, rng)
    played, speaker_info = loudspeaker(far, rng, overdrive_range_db)
    recipe.update(speaker_info)
    delayed = np.concatenate([np.zeros(int(delay_ms * FS / 1000)), played])[:n]
    echo = fftconvolve(delayed, h_echo)[:n]
    if path_change:
        change_s = float(rng.uniform(5, 6))
        moved = float(rng.uniform(*distance_range))
        h_moved, _ = _path_for(kind, room, moved, rng, dims)
        echo2 = fftconvolve(delayed, h_moved)[:n]
        echo2 *= _rms(echo) / _rms(echo2)                      # moved, not turned up or down
        at, fade = int(change_s * FS), np.linspace(0, 1, 480)
        echo[at:at + 480] = echo[at:at + 480] * (1 - fade) + echo2[at:at + 480] * fade
        echo[at + 480:] = echo2[at + 480:]
        recipe.update({"path_change_s": round(change_s, 2), "moved_to_m": round(moved, 2)})

    near_dry = sources.talker(NEAR_ACTORS, seconds, rng)
    near = fftconvolve(near_dry, h_near if h_near is not None else room(1.5))[:n]
    near = _set_dbfs(near, NEAR_DBFS) * (_rms(near_dry[np.abs(near_dry) > 0]) / _rms(near_dry))
    echo_above_db = float(rng.uniform(*echo_above_range))
    # the echo's level relative to the near talker's active level, measured where the far end plays
    echo *= 10 ** ((NEAR_DBFS + echo_above_db) / 20) / _rms(echo[np.abs(echo) > 1e-4])
    recipe["echo_above_near_db"] = round(echo_above_db, 1)
    noise = rng.standard_normal(n) * 10 ** (NOISE_DBFS / 20)
    if talk_type == "st":
        near = np.zeros(n)
    if talk_type == "nst":
        far, echo = np.zeros(n), np.zeros(n)
    mic = echo + near + noise
    peak = np.max(np.abs(mic))
    if peak > 0.99:                                             # the microphone's ADC would clip: turn all down
        scale = 0.99 / peak
        mic, echo, near, far = mic * scale, echo * scale, near * scale, far * scale
    return {"mic": mic, "far": far, "near": near, "echo": echo}, recipe


def build(out_dir, per_talk_type=6, seconds=10.0, seed=21, corpus=CORPUS, music=MUSIC, rirs=MEASURED_RIRS,
          say=print, overdrive_range_db=OVERDRIVE_DB, talk_types=TALK_TYPES):
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sources = Sources(corpus, music)
    clips = []
    for talk_type in talk_types:
        for index in range(per_talk_type):
            rng = np.random.default_rng([seed, TALK_TYPES.index(talk_type), index])
            signals, recipe = build_clip(sources, talk_type, index, rng, seconds, rirs, overdrive_range_db)
            name = f"{talk_type}-{index:02d}"
            for part, samples in signals.items():
                write_wav(out_dir / f"{name}.{part}.wav", samples, FS)
            clips.append({"name": name, **recipe})
            say(f"{name}: {json.dumps(recipe)}")
    (out_dir / "set.json").write_text(json.dumps({"seed": seed, "seconds": seconds, "clips": clips}, indent=1))
    return clips


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m evaluation.echo_set", description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--per-talk-type", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--corpus", default=str(CORPUS))
    parser.add_argument("--music", default=str(MUSIC))
    parser.add_argument("--rirs", default=str(MEASURED_RIRS))
    parser.add_argument("--overdrive-db", type=float, nargs=2, default=OVERDRIVE_DB, metavar=("LOW", "HIGH"),
                        help="the loudspeaker amplifier's overdrive range in dB (default 3 9; 0 0 = no clipping)")
    parser.add_argument("--talk-types", default=",".join(TALK_TYPES), help="subset of st,dt,nst")
    args = parser.parse_args(argv)
    try:
        build(args.out_dir, args.per_talk_type, args.seconds, args.seed, args.corpus, args.music, args.rirs,
              overdrive_range_db=tuple(args.overdrive_db), talk_types=args.talk_types.split(","))
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
