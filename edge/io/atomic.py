"""Files that appear complete or not at all: write to a temporary file beside the target, then rename."""

import errno
import os
import secrets
import stat
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


class TempFile:
    """A new file beside ``target`` (``.NAME.RANDOM.SUFFIX``) that no signal can leave behind.

    ``tempfile.mkstemp`` makes its file before it returns the name: a signal raised as an exception (Ctrl-C,
    SIGTERM) between the two left a hidden file that nothing knew to remove. Here the name is kept on the object
    before the file exists, so :meth:`remove` finds it whenever the signal came::

        tmp = TempFile(target)
        try:
            handle = tmp.create()
            ...
        except BaseException:
            tmp.remove()
            raise
    """

    def __init__(self, target, suffix=".tmp"):
        self.target, self.suffix, self.path = Path(target), suffix, None

    def create(self, mode=0o600):
        """Make the file (``mode`` before the umask) and return its descriptor, open for writing."""
        for _ in range(100):                       # 8 random characters, as mkstemp: the same longest name works
            self.path = self.target.parent / f".{self.target.name}.{secrets.token_hex(4)}{self.suffix}"
            try:
                return os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
            except OSError as exc:                 # nothing was made: a taken name is another's, never ours to remove
                self.path = None
                if not isinstance(exc, FileExistsError):
                    raise
        raise FileExistsError(errno.EEXIST, f"no free temporary name beside {self.target}", str(self.target))

    def remove(self):
        """Delete the file if it exists (a no-op before :meth:`create` or after a rename took it)."""
        if self.path is not None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            self.path = None


def probe_writable(target):
    """Make and remove an empty hidden file beside ``target``: whether a file can be written there, asked before any
    work. Raises the OSError that the write would meet."""
    probe = TempFile(target, suffix=".probe")
    try:
        os.close(probe.create())
    finally:
        probe.remove()


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
    tmp = TempFile(path)
    try:
        with os.fdopen(tmp.create(), "wb") as stream:
            stream.write(data)
        if mode is None:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask                # the file is made 0600; a model must be readable by the service
        os.chmod(tmp.path, mode)
        os.replace(tmp.path, path)
    except BaseException:
        tmp.remove()
        raise
