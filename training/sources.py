"""The public speech sources the corpus builder knows: where their files are, who speaks, in which language.

Each :class:`Source` turns the folder a user downloaded (a git checkout or a
``dpkg-deb -x`` tree, see ``docs/corpus.md``) into ``(path, speaker, language,
licence)`` rows. Speakers are what the splits are made of, so they are named
as precisely as the source allows: GCompris credits a voice per file in its
``LICENSE``; speechocean762 and RAVDESS have speaker folders; the other
sources have one volunteer (or a few) per language, so the language stands in
for the speaker there.

Some sources are **real recordings only** (``real_only``): volunteers' own
microphones and rooms, added for their recording chains. Every file of theirs
that is not too short or silent is teacher material (``training.teacher``), never a clean target, whatever the
corpus filter measures: Common Voice pads its clips with digital silence, which
lets the filter's SNR estimate pass room recordings.

Material on the project's held-out list (``../shared/DATA-MORE.md``) is
refused here, not merely skipped later: RAVDESS actors 21-24 never enter a
corpus.
"""

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

from edge.errors import UsageError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
#: RAVDESS actors kept for the team's independent check; nobody trains or tunes on them.
HELD_OUT_RAVDESS_ACTORS = frozenset(f"Actor_{number}" for number in range(21, 25))


class SourceFile(NamedTuple):
    path: Path
    speaker: str          # unique within the source, filesystem-safe
    language: str         # ISO-like code as the source spells it ("en", "pt_BR"); "mul" when mixed
    licence: str


@dataclass(frozen=True)
class Source:
    """One public speech source: how to list it, its licence, and the report group it belongs to."""

    name: str
    licence: str
    obtain: str                    # how to get it (shown in errors and docs)
    group: str                     # validation report group (see training.corpus_build.GROUPS)
    list_files: Callable[[Path], Iterator[SourceFile]]
    layout_hint: str               # a path that must exist inside the folder given for it
    real_only: bool = False        # every file is a real recording for the teacher, never a clean target

    def files(self, root):
        root = Path(root)
        if not (root / self.layout_hint).exists():
            raise FileNotFoundError(f"{root}: does not look like {self.name} (no {self.layout_hint} inside); "
                                    f"get it with: {self.obtain}")
        return sorted(self.list_files(root), key=lambda row: str(row.path))


def slug(text):
    """A filesystem-safe, lower-case speaker name: 'Horia PELLE 2016' -> 'horia-pelle'."""
    text = re.sub(r"<[^>]*>|\([^)]*\)|\b(19|20)\d\d\b", " ", text)
    text = re.sub(r"[^0-9a-zA-Z]+", "-", text.encode("ascii", "ignore").decode()).strip("-").lower()
    return text or "unknown"


def _audio(root):
    return (path for path in Path(root).rglob("*") if path.suffix.lower() in AUDIO_SUFFIXES and path.is_file())


# --- GCompris voices: <lang>/<topic>/<file>.ogg, credits per file in LICENSE -------------------

_CREDITLESS = re.compile(r"^(gpl|gnu|public domain|http|smart4kids|creative)", re.IGNORECASE)


def gcompris_credits(license_text):
    """``{relative path: (voice, licence)}`` from GCompris-voices' LICENSE.

    The file lists ``./lang/topic:`` headers, then ``file.ogg   Name year / licence``.
    Lines without a named voice (a bare licence, a web site) give voice ''.
    """
    credits, folder = {}, None
    for line in license_text.splitlines():
        line = line.strip()
        if line.startswith("./") and line.endswith(":"):
            folder = line[2:-1]
            continue
        parts = line.split(None, 1)
        if folder is None or len(parts) != 2 or not parts[0].endswith(".ogg"):
            continue
        credit = parts[1].strip()
        voice, _, licence = credit.rpartition(" / ") if " / " in credit else ("", "", credit)
        if _CREDITLESS.match(voice or "gpl"):
            voice = ""
        credits[f"{folder}/{parts[0]}"] = (voice, licence.strip())
    return credits


def _gcompris(root):
    credits = gcompris_credits((root / "LICENSE").read_text(encoding="utf-8", errors="replace"))
    for path in _audio(root):
        relative = path.relative_to(root).as_posix()
        language = relative.split("/")[0]
        voice, licence = credits.get(relative, ("", "GPL (see LICENSE)"))
        yield SourceFile(path, f"{language}-{slug(voice) if voice else 'uncredited'}", language, licence)


# --- speechocean762: WAVE/SPEAKERnnnn/*.WAV, 16 kHz ---------------------------------------------

def _speechocean(root):
    for path in _audio(root / "WAVE"):
        yield SourceFile(path, path.parent.name.lower(), "en", "CC BY 4.0")


# --- festvox-ru (Debian): one speaker --------------------------------------------------------

_FESTVOX_WAV = "usr/share/festival/voices/russian/msu_ru_nsh_clunits/wav"


def _festvox_ru(root):
    for path in _audio(root / _FESTVOX_WAV):
        yield SourceFile(path, "msu-ru-nsh", "ru", "BSD-like (festvox-ru copyright)")


# --- Tux Paint stamp descriptions (Debian): *_desc[_lang].ogg ----------------------------------

def _tuxpaint(root):
    for path in _audio(root / "usr/share/tuxpaint/stamps"):
        match = re.search(r"_desc(?:_([A-Za-z_]+?))?(?:\.ogg)+$", path.name)
        if match:
            language = match.group(1) or "en"
            yield SourceFile(path, language.lower(), language, "GPL-2+")


# --- Artikulate: courses/<course>/<lang>/*.ogg --------------------------------------------------

def _artikulate(root):
    for path in _audio(root / "courses"):
        language = path.parent.name
        yield SourceFile(path, language.lower(), language, "CC BY-SA 3.0")


# --- Fish Fillets, Czech voices (Debian): sound/<level>/cs/<level>-<character>-<line>.ogg -------
# Only the two fish (m, v) are kept: the other characters include robots and echo effects.

_FILLETS_SOUND = "usr/share/games/fillets-ng/sound"
FILLETS_SPEAKERS = {"m": "small-fish", "v": "big-fish"}


def _fillets(root):
    for path in _audio(root / _FILLETS_SOUND):
        parts = path.stem.split("-")
        if path.parent.name == "cs" and len(parts) >= 3 and parts[1] in FILLETS_SPEAKERS:
            yield SourceFile(path, FILLETS_SPEAKERS[parts[1]], "cs", "GPL-2")


# --- childsplay: alphabet-sounds/alphabet-sounds_<lang>/*/<lang>/*.ogg -------------------------

def _childsplay(root):
    for path in _audio(root / "alphabet-sounds"):
        match = re.match(r"alphabet-sounds_(\w+)$", path.relative_to(root / "alphabet-sounds").parts[0])
        if match:
            yield SourceFile(path, match.group(1).lower(), match.group(1), "GPL-3")


# --- the team's ../shared/data speech: RAVDESS and word lists -----------------------------------

def _ravdess(root):
    for path in _audio(root / "speech" / "ravdess"):
        actor = path.relative_to(root / "speech" / "ravdess").parts[0]
        if actor in HELD_OUT_RAVDESS_ACTORS:
            raise ValueError(f"{path}: RAVDESS {actor} is on the held-out list (actors 21-24, "
                             f"../shared/DATA-MORE.md); remove it from the folder, it must never be used")
        yield SourceFile(path, actor.lower().replace("_", "-"), "en", "CC BY-NC-SA 4.0 (non-commercial)")


def _words(root):
    for path in _audio(root / "speech" / "words"):
        package, language = path.relative_to(root / "speech" / "words").parts[:2]
        if package == "ktuberling":          # ktuberling/sounds/<lang>/...
            language = path.relative_to(root / "speech" / "words").parts[2]
        licence = "GPL-2+" if package == "klettres" else "GPL-2+ / CC0 / CC-BY / GFDL (ktuberling-data)"
        yield SourceFile(path, f"{package}-{language.lower()}", language, licence)


# --- real recordings only: Mozilla Common Voice subsets and Mycroft's Precise community data ------
# Common Voice (CC0): volunteers read prompts into their own microphones at home. The subsets are the clips of
# a public repository, clips/*.mp3, with Common Voice's own .tsv tables naming each clip's volunteer.

COMMON_VOICE_TABLES = ("validated.tsv", "other.tsv")      # not invalidated.tsv: clips the community rejected


def _common_voice_volunteers(root):
    """``{clip name: client_id}`` from a Common Voice folder's tables (:data:`COMMON_VOICE_TABLES`)."""
    tables = [root / table for table in COMMON_VOICE_TABLES if (root / table).is_file()]
    if not tables:
        raise ValueError(f"{root}: neither {' nor '.join(COMMON_VOICE_TABLES)} is there; they name each clip's "
                         f"volunteer (Common Voice's own tables, beside clips/): export them with the clips")
    volunteer = {}
    for table in tables:
        # QUOTE_NONE: a sentence may open a quote it never closes, which would swallow the rows after it.
        with open(table, encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
            if not {"client_id", "path"} <= set(reader.fieldnames or ()):
                raise ValueError(f"{table}: no client_id and path columns; is it a Common Voice table?")
            for row in reader:
                volunteer.setdefault(row["path"], row["client_id"])
    return volunteer


def _cv_speaker(client_id):
    return f"cv-{client_id[:16]}"


def _common_voice(language, left_out=frozenset()):
    """A Common Voice folder's tabled clips, without those of the ``left_out`` speakers."""
    def files(root):
        volunteer = _common_voice_volunteers(root)
        for path in (root / "clips").glob("*.mp3"):
            if path.name in volunteer:        # a clip no table names has no known volunteer or verdict
                speaker = _cv_speaker(volunteer[path.name])
                if speaker not in left_out:
                    yield SourceFile(path, speaker, language, "CC0 1.0 (Mozilla Common Voice)")
    return files


# A Common Voice sample across languages: <language>/clips/*.mp3 and <language>/validated.tsv, each folder laid out
# as one subset above. French is left out, and with it every clip of its volunteers in other languages: the
# evaluation's real recordings hold a French Common Voice clip (speechbrain-cv), whose volunteer no table names.

COMMON_VOICE_SAMPLE_LEFT_OUT = frozenset({"fr"})


def _common_voice_sample(root):
    folders = sorted(path for path in root.iterdir() if (path / "clips").is_dir())
    left_out = {_cv_speaker(client_id) for folder in folders if folder.name in COMMON_VOICE_SAMPLE_LEFT_OUT
                for client_id in _common_voice_volunteers(folder).values()}
    for folder in folders:
        if folder.name not in COMMON_VOICE_SAMPLE_LEFT_OUT:
            yield from _common_voice(folder.name, left_out)(folder)


# Precise community data: wake words and other phrases recorded at home by Mycroft's users. Each contributor's
# waiver in licenses/ lists the files they put in the public domain; that contributor is the speaker. heysavant/
# (CC BY-NC-SA, no waiver) and files no waiver lists are left out.

def precise_owners(licences_dir):
    """``{file name or relative path: contributor}`` from the public-domain waivers in ``licenses/``.

    A waiver lists some files by name and some by path (``heycomputer/es/NAME.wav``); both are kept as written.
    """
    owners = {}
    for waiver in sorted(Path(licences_dir).glob("license-2*.txt")):
        text = waiver.read_text(encoding="utf-8", errors="replace")
        match = re.search(r"\bI, ([^,(]+)", text)
        if match and "public domain" in text:
            for line in text.splitlines():
                if line.strip().endswith(".wav"):
                    owners[line.strip()] = match.group(1).strip()
    return owners


def _precise(root):
    owners = precise_owners(root / "licenses")
    if not owners:
        raise ValueError(f"{root}/licenses: no public-domain waiver lists a .wav file; without one no file's "
                         f"licence is known")
    for path in _audio(root):
        parts = path.relative_to(root).parts
        owner = owners.get(path.relative_to(root).as_posix(), owners.get(path.name))
        if len(parts) == 3 and owner:                           # <phrase>/<language>/<file>.wav
            yield SourceFile(path, slug(owner), parts[1].split("-")[0],
                             "public domain (the contributor's waiver in licenses/)")


SOURCES = {source.name: source for source in (
    Source("gcompris", "GPL-2+/GPL-3+ (most), CC BY-SA (art4apps, Smart4Kids), public domain; per file in "
           "its LICENSE", "git clone https://github.com/gcompris/GCompris-voices", "multilingual",
           _gcompris, "LICENSE"),
    Source("speechocean762", "CC BY 4.0 (as listed by OpenSLR 101; the repository states no licence file)",
           "git clone https://github.com/jimbozhang/speechocean762", "read-en-16k", _speechocean, "WAVE"),
    Source("festvox-ru", "BSD-like (Nickolay V. Shmyrev 2005, see the package's copyright)",
           "apt-get download festvox-ru && dpkg-deb -x festvox-ru_*.deb DIR", "read-ru-16k",
           _festvox_ru, _FESTVOX_WAV),
    Source("tuxpaint", "GPL-2+", "apt-get download tuxpaint-stamps-default && dpkg-deb -x "
           "tuxpaint-stamps-default_*.deb DIR", "multilingual", _tuxpaint, "usr/share/tuxpaint/stamps"),
    Source("artikulate", "CC BY-SA 3.0", "git clone https://github.com/KDE/artikulate-data", "multilingual",
           _artikulate, "courses"),
    Source("fillets-cs", "GPL-2", "apt-get download fillets-ng-data-cs && dpkg-deb -x "
           "fillets-ng-data-cs_*.deb DIR", "acted-cs-22k", _fillets, _FILLETS_SOUND),
    Source("childsplay", "GPL-3", "git clone https://github.com/Txikilinux/childsplay", "multilingual",
           _childsplay, "alphabet-sounds"),
    Source("ravdess", "CC BY-NC-SA 4.0 (non-commercial)", "the team's ../shared/data", "acted-en-48k",
           _ravdess, "speech/ravdess"),
    Source("words", "GPL-2+ / CC0 / CC-BY / GFDL (klettres-data, ktuberling-data)", "the team's ../shared/data",
           "multilingual", _words, "speech/words"),
    Source("commonvoice-fa", "CC0 1.0 (Mozilla Common Voice, Persian; the repository states no licence)",
           "git clone https://github.com/yasaman999/SR", "realworld", _common_voice("fa"), "clips",
           real_only=True),
    Source("commonvoice-tw", "CC0 1.0 (Mozilla Common Voice, Twi; the repository states no licence)",
           "git clone https://github.com/pryyyynz/audio-for-Twi-TTS", "realworld", _common_voice("tw"), "clips",
           real_only=True),
    Source("commonvoice-sample", "CC0 1.0 (Mozilla Common Voice 6.1, 58 languages; the repository states no "
           "licence)", "git clone https://github.com/omnilingo/rsample-100-cv-corpus-6.1-2020-12-11", "realworld",
           _common_voice_sample, "en/validated.tsv", real_only=True),
    Source("precise-community", "public domain (each contributor's waiver in licenses/)",
           "git clone https://github.com/MycroftAI/Precise-Community-Data", "realworld", _precise, "licenses",
           real_only=True),
)}


def source_named(name):
    try:
        return SOURCES[name]
    except KeyError:
        raise UsageError(f"unknown speech source {name!r}; known: {', '.join(SOURCES)}") from None
