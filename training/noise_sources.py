"""The public noise sources the noise-corpus builder knows: where, which files, which class, which licence.

One :class:`NoiseSource` per downloaded folder (see ``/work/extdata/sources/SOURCES.md``
and ``../shared/DATA-NOISE.md`` for how each was obtained). A file's class comes
from the first rule whose pattern matches its path relative to the source folder
(case-insensitive ``re.search``); a file no rule matches is recorded as rejected
("no class rule"), never guessed. Licences are copied as the source writes them,
with the place they were read.

Excluded outright, never decoded: MAX-Audio-Classifier's ``car-horn.wav`` and
``dog.wav`` (not listed in its samples/README.md: licence unknown) and voice
call-outs (FlightGear's checklists). Nothing on the held-out lists of
DATA-MORE.md / DATA-NOISE.md is among these sources; :func:`check_not_held_out`
refuses a folder whose path names one of them.
"""

import re
from dataclasses import dataclass, field
from pathlib import Path

from edge.errors import UsageError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".caf", ".m4a", ".mp3")
#: Path fragments of the held-out material (DATA-MORE.md, DATA-NOISE.md); a source folder naming one is refused.
HELD_OUT_NAMES = ("voicebank", "valentini", "demand", "dns-challenge", "dns_challenge", "deepfilternet-samples",
                  "ms-snsd", "ms_snsd", "rafaelmardojai", "actor_21", "actor_22", "actor_23", "actor_24")


@dataclass(frozen=True)
class NoiseSource:
    """One downloaded noise folder and how to turn its files into classed, licensed noise."""

    name: str
    root: str                      # "sources" (the raw downloads) or "shared" (the team's ../shared/data)
    folder: str                    # relative to that root
    rules: tuple                   # ((regex on the relative path, class), ...), first match wins
    licence: str                   # as written
    licence_where: str             # where it was read
    attribution: str
    exclude: tuple = ()            # regexes of files never used (with the reason in the module doc)
    max_segments_per_file: int = 0  # 0: all; long music tracks give a few segments each, not hours
    licence_by_file: tuple = field(default=())   # ((regex, licence), ...) overriding ``licence``

    def class_of(self, relative):
        for pattern, label in self.rules:
            if re.search(pattern, relative, re.IGNORECASE):
                return label
        return None

    def licence_of(self, relative):
        for pattern, licence in self.licence_by_file:
            if re.search(pattern, relative, re.IGNORECASE):
                return licence
        return self.licence

    def excluded(self, relative):
        return any(re.search(pattern, relative, re.IGNORECASE) for pattern in self.exclude)

    def files(self, root_dir):
        """Sorted audio files under the source's folder, as (path, path relative to that folder)."""
        base = Path(root_dir) / self.folder
        if not base.is_dir():
            raise FileNotFoundError(f"{base}: missing; noise source {self.name} is expected there "
                                    f"(see /work/extdata/sources/SOURCES.md)")
        check_not_held_out(base)
        paths = sorted(p for p in base.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
        return [(path, path.relative_to(base).as_posix()) for path in paths]


def check_not_held_out(path):
    lowered = str(path).lower()
    for name in HELD_OUT_NAMES:
        if name in lowered:
            raise UsageError(f"{path}: names held-out material ({name!r}, DATA-MORE.md / DATA-NOISE.md); "
                             f"it must never be fetched, trained or tuned on")


_0AD = "0 A.D. sound effects, Wildfire Games (wildfiregames.com)"
_FG = "FlightGear sounds, Curtis L. Olson and the FlightGear team"
_LINCITY = "LinCity-NG sound effects (Debian lincity-ng-data)"
_MUSIC_CAP = 3          # segments (of SEGMENT_S) per music track: 104 tracks -> about 50 min, not 8 h

NOISE_SOURCES = {source.name: source for source in (
    NoiseSource(
        "donateacry", "sources", "noise/donateacry-corpus",
        ((r"\.caf$", "crying-baby"), (r"cleaned_and_updated_data/.*\.wav$", "crying-baby")),
        "ODbL 1.0 (database) / DbCL 1.0 (contents)", "README.md § License (gveres/donateacry-corpus)",
        "donateacry-corpus, gveres (github.com/gveres/donateacry-corpus)"),
    NoiseSource(
        "max-audio-classifier", "sources", "noise/MAX-Audio-Classifier/samples",
        ((r"^applause", "applause"), (r"^birds", "birds"), (r"^car_engine", "engine"),
         (r"^crowd", "crowd"), (r"^rain", "rain"), (r"^snoring", "snoring"), (r"^thunder", "thunder"),
         (r"^train", "train"), (r"^typing", "typing"),
         (r"^(arcade_music|cinematic|jazz_guitar|piano)", "music")),
        "Attribution", "samples/README.md (IBM/MAX-Audio-Classifier), per file",
        "freesound.org contributors as listed in MAX-Audio-Classifier samples/README.md",
        exclude=(r"^car-horn\.wav$", r"^dog\.wav$", r"^guitar\.wav$", r"^gunshots"),
        licence_by_file=((r"^(crowd_cheering|jazz_guitar|typing|train)", "CC0 (Creative Commons 0)"),)),
    NoiseSource(
        "berlin-noise", "sources", "noise/berlin_noise/audio", ((r".", "street"),),
        "CC BY 4.0", "README.md, LICENSE (thomasrosen/berlin_noise)", "berlin_noise, Thomas Rosen"),
    NoiseSource(
        "lincity-ng", "sources", "noise/lincity-ng-data/usr/share/games/lincity-ng",
        ((r"music/", "music"), (r"Trafic", "traffic"), (r"RailTrain", "train"),
         (r"(Build|Construction|Raze)", "construction"), (r"Blacksmith", "hammering"),
         (r"(Industry|CoalMine|OreMine|PowerCoal|Mill\d|Pottery|Recycle|Tip\d|Substation|PowerLine)", "industry"),
         (r"(Water\d|ParklandLake|Harbor)", "water"), (r"(Farm)", "farm"), (r"^sounds/Fire", "fire"),
         (r"(SportsCroud|Market)", "crowd"), (r"(Residential|School|University|Health|Shanty|Commune)", "town"),
         (r"WindMill", "wind"), (r"(Rocket|ParklandPlane)", "jet-turbine"), (r"Window", "doors"),
         (r"Green\d", "birds")),
        "GPL-2+ (sound effects dual GPL / CC BY-SA 2.0; Debian uses GPL)",
        "usr/share/doc/lincity-ng-data/copyright", _LINCITY),
    NoiseSource(
        "0ad", "sources", "noise/0ad-data/audio",
        ((r"ambient/building/amb_farm", "farm"), (r"ambient/building/amb_port", "harbour"),
         (r"ambient/building/amb_trade", "crowd"), (r"ambient/dayscape", "forest"),
         (r"ambient/water/(river|waterfall)", "water"), (r"ambient/water/wave", "waves"),
         (r"ambient/weather/rain", "rain"), (r"ambient/weather/thunder", "thunder"),
         (r"ambient/weather/(wind|snowstorm)", "wind"), (r"actor/fauna", "animals"),
         (r"actor/gate", "doors"), (r"actor/ship", "boat"),
         (r"actor/(singlesteps|human/movement|mounted/movement)", "footsteps"),
         (r"resource/construction/con_saw", "sawing"), (r"resource/construction", "hammering"),
         (r"resource/lumbering", "chopping"), (r"resource/mining", "hammering"),
         (r"resource/(farming|foraging|gathering)", "rustle")),
        "CC-BY-SA-3.0", "usr/share/doc/0ad-data/copyright; audio/LICENSE.txt", _0AD),
    NoiseSource(
        "flightgear", "sources", "noise/flightgear-data-base/usr/share/games/flightgear",
        ((r"Sounds/(jet|turbine|turbojet|overspeed|whine)", "jet-turbine"),
         (r"Sounds/(helicopter|rotor|blade_vortex)", "helicopter"),
         (r"Sounds/(rain)", "rain"), (r"Sounds/wind", "wind"), (r"Sounds/thunder", "thunder"),
         (r"Sounds/wave", "waves"), (r"Sounds/(fan|avionics|gyro|flaps-motor)", "fan-motor"),
         (r"Sounds/radionoise", "radio-static"),
         (r"c172p/Sounds/engine", "engine"),
         (r"Sounds/(prop|engine-prop|R-1535|p51d|turboprop|exhaust|rumble|cranking|starter|engstart|wasp)",
          "propeller-engine"),
         (r"Sounds/(door|window|glove|keys|click|double-click|lever|trim|primer|control_lock|rudder|"
          r"scroll|scratch|flaps|gear|gps|rattleroll)", "doors"),
         (r"Sounds/tires-rolling", "tyres"), (r"Sounds/(tires-screech|squeal)", "tyres"),
         (r"Sounds/water", "water"), (r"Sounds/(beep|stall|gear-hrn)", "beeps-alarms"),
         (r"Sounds/(crash|damage|repair)", "impacts"), (r"Sounds/coughing", "cough")),
        "GPL-2+", "usr/share/doc/flightgear-data-base/copyright", _FG,
        exclude=(r"checklist", r"gatling", r"mk-viii", r"tcas", r"intro\.mp3")),
    NoiseSource(
        "blanket", "shared", "noise/blanket",
        ((r"^birds", "birds"), (r"^boat", "boat"), (r"^coffee-shop", "cafe"), (r"^fireplace", "fire"),
         (r"^(pink|white)-noise", "stationary-noise"), (r"^rain", "rain"), (r"^storm", "thunder"),
         (r"^summer-night", "insects"), (r"^waves", "waves"), (r"^wind", "wind")),
        "CC0 / CC BY / CC BY-SA / public domain, per file", "noise/blanket/LICENSING.md (team data)",
        "Blanket app sound set (team data; authors per LICENSING.md)",
        licence_by_file=((r"^(birds|boat|wind)", "CC0"), (r"^(coffee-shop|fireplace|summer-night)", "Public Domain"),
                         (r"^(rain|storm|waves)", "CC BY"), (r"^(pink|white)-noise", "CC BY-SA"))),
    NoiseSource(
        "freesound-team", "shared", "noise/freesound", ((r".", "stationary-noise"),),
        "CC0", "data/SOURCES.md (team data)", "freesound 573577 (team data)"),
    NoiseSource(
        "sonic-pi", "shared", "noise/sonic-pi",
        ((r"^vinyl", "vinyl-crackle"), (r"^loop_3d_printer", "fan-motor"), (r"^loop_industrial", "industry"),
         (r"^misc_crow", "birds"), (r"^(misc_cineboom|perc_impact|perc_door)", "impacts"),
         (r"^(elec_beep|elec_blip|elec_bell|elec_chime|elec_ping|elec_plip|elec_bong|elec_blup)", "beeps-alarms"),
         (r"^ambi_", "drone"), (r"^(drum_|perc_|loop_|bass_|guit_|elec_)", "music")),
        "mostly CC0, a few CC-BY-SA-4.0", "data/SOURCES.md (team data; Debian sonic-pi-samples copyright)",
        "Sonic Pi samples (Debian sonic-pi-samples)", exclude=(r"^misc_burp",)),
    NoiseSource(
        "hedgewars-music", "shared", "noise/hedgewars-music", ((r".", "music"),),
        "GPL-2 / CC-BY-SA (per package copyright)", "data/SOURCES.md (team data)",
        "Hedgewars music (Debian hedgewars-data)", max_segments_per_file=_MUSIC_CAP),
    NoiseSource(
        "warzone2100-music", "sources", "music/warzone2100-music", ((r"\.opus$", "music"),),
        "GPL-2+ (Debian); albums also CC-BY-SA-3.0 or later", "usr/share/doc/warzone2100-music/copyright; "
        "music/albums/*/license.txt", "Warzone 2100 soundtracks (Martin Severn, LupusMechanicus)",
        max_segments_per_file=_MUSIC_CAP),
    NoiseSource(
        "wesnoth-music", "sources", "music/wesnoth-1.16-music", ((r"\.ogg$", "music"),),
        "GPL-2+", "usr/share/doc/wesnoth-1.16-music/copyright", "Battle for Wesnoth music",
        max_segments_per_file=_MUSIC_CAP),
    NoiseSource(
        "singularity-music", "sources", "music/singularity-music", ((r"\.ogg$", "music"),),
        "CC BY-SA 3.0", "usr/share/doc/singularity-music/copyright", "Max McCracken (Endgame: Singularity)",
        max_segments_per_file=_MUSIC_CAP),
    NoiseSource(
        "hyperrogue-music", "sources", "music/hyperrogue-music", ((r"/music/.*\.ogg$", "music"),),
        "CC-BY-SA-3.0", "usr/share/doc/hyperrogue-music/copyright",
        "Shawn Parrotte, Lincoln Domina, Will Savino (HyperRogue music)", max_segments_per_file=_MUSIC_CAP),
)}


def source_named(name):
    try:
        return NOISE_SOURCES[name]
    except KeyError:
        raise UsageError(f"unknown noise source {name!r}; known: {', '.join(NOISE_SOURCES)}") from None
