"""Files that appear complete or not at all: write to a temporary file beside the target, then rename."""

import errno
import os
import stat
import tempfile
from pathlib import Path


def refuse_special_target(path):
    """Raise if ``path`` exists as something a rename would wrongly replace: a folder, device, FIFO or socket.

    A symlink is not followed by the rename (the link itself is replaced), so it passes here.
    """
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
        kind = ("a folder" if stat.S_ISDIR(mode) else "a character device" if stat.S_ISCHR(mode)
                else "a block device" if stat.S_ISBLK(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a socket")
        raise FileExistsError(errno.EEXIST, f"{path} exists and is {kind}, not a regular file; refusing to "
                                            "replace it (name a file instead)", str(path))


def atomic_write(path, data: bytes, mode=None, folder_mode=None):
    """Write ``data`` to ``path`` atomically, with ``mode`` or the permissions the umask gives a new file.

    A missing folder is made (with its parents), with ``folder_mode`` when given whatever the umask.

    A failure leaves the old file (or none) and no temporary behind. An
    existing target that is not a regular file (``/dev/null``, a folder) is
    refused, never replaced.
    """
    path = Path(path)
    refuse_special_target(path)
    if not path.parent.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
        if folder_mode is not None:
            os.chmod(path.parent, folder_mode)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        if mode is None:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask                # mkstemp makes 0600; a model must be readable by the service
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
