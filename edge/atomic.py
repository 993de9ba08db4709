"""Files that appear complete or not at all: write to a temporary file beside the target, then rename."""

import os
import tempfile
from pathlib import Path


def atomic_write(path, data: bytes):
    """Write ``data`` to ``path`` atomically, with the permissions the umask gives a new file.

    A failure leaves the old file (or none) and no temporary behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)            # mkstemp makes 0600; a model must be readable by the service
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
