"""The one family of errors a user can act on; every command line catches exactly this family.

A :class:`PercepnetError` message names the file, key or value and says what
to do; the commands print it after ``error:`` and exit with status 2.
Anything else (a numpy ValueError, a KeyError, an AttributeError) is a bug and
surfaces as a traceback. The subclasses say what kind of thing went wrong;
host packages derive their own (``training.corpus.CorpusError`` is a
:class:`DataError`, for example) so that the same handler covers them.
"""


class PercepnetError(Exception):
    """A problem the user can fix; the message says what to do."""


class UsageError(PercepnetError, ValueError):
    """A value given on the command line or to an API is not allowed (also a ValueError, which it is)."""


class ConfigError(UsageError):
    """The configuration is invalid; the message names the key, the value and what is allowed."""


class AudioFileError(PercepnetError):
    """A WAV file could not be read or written."""


class DeviceError(PercepnetError):
    """An audio device cannot be used: missing, unplugged, busy, held by another daemon, or at the wrong rate."""


class ModelError(PercepnetError):
    """A model or its metadata is missing, corrupt, or does not fit this DSP or this runtime."""


class MissingDependencyError(PercepnetError):
    """An optional package this command needs is not installed; the message says which extra installs it."""


class DataError(PercepnetError):
    """A corpus, feature cache or set of evaluation inputs cannot be used as given."""


class ConversionError(PercepnetError):
    """A trained model cannot be converted or verified."""
