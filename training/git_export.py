"""Export a git repository's files at one commit into a plain folder, naming the files its store lacks.

``scripts/rebuild-data`` turns the public sources' git repositories into the folders the corpus builders read.
Where they come from the search tool's mirror, the largest blobs may be listed in the tree but absent from the
object store; ``git archive`` then stops at the first one and leaves half a folder. Here every file is written
on its own, and the absent ones are skipped and returned by name, so the caller reports them and the builders
(whose manifests record what they read) see the same files on every rebuild from the same mirror.

    python -m training.git_export GITDIR DEST [--commit HEAD] [PATH ...]
"""

import argparse
import posixpath
import shutil
import subprocess
import sys
from pathlib import Path

from edge.errors import UsageError


def _git(git_dir, *args, **kwargs):
    return subprocess.run(["git", "-C", str(git_dir), *args], capture_output=True, **kwargs)


LINK_MODE = "120000"
MAX_LINK_HOPS = 8


def _link_target(git_dir, commit, name, sha):
    """The blob a link to a file resolves to at ``commit`` (links followed), or None for a folder or a dangling link.

    A checkout gives the corpus builders a file link's target under the link's name (they read it twice, as the
    first builds did: GCompris-voices has 115 such links), while they never walk into a linked folder.
    """
    for _ in range(MAX_LINK_HOPS):
        target = _git(git_dir, "cat-file", "blob", sha)
        if target.returncode != 0:
            return None
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name),
                                                     target.stdout.decode("utf-8", "surrogateescape")))
        if resolved.startswith("../") or posixpath.isabs(resolved):
            return None
        found = _git(git_dir, "ls-tree", "-z", commit, "--", resolved)
        entry = found.stdout.split(b"\0")[0] if found.returncode == 0 else b""
        if not entry:
            return None
        mode, kind, sha = entry.split(b"\t", 1)[0].decode().split()
        if kind != "blob":
            return None
        if mode != LINK_MODE:
            return sha
        name = resolved
    return None


def export(git_dir, dest, paths=(), commit="HEAD"):
    """Write the files of ``commit`` (under ``paths``, or all) to ``dest``; return the paths that were absent.

    ``dest`` is written through ``dest.part`` and renamed at the end, so an interrupted export leaves no folder
    that looks finished. A link to a file is written as a copy of its target, as a checkout would show it to the
    builders; links to folders, links out of the tree and submodules are skipped (the builders do not follow them).
    """
    dest = Path(dest)
    listing = _git(git_dir, "ls-tree", "-r", "-z", commit, "--", *paths)
    if listing.returncode != 0:
        raise UsageError(f"{git_dir}: cannot list {commit} ({listing.stderr.decode().strip()}); "
                         f"pass a git checkout or bare repository that holds that commit")
    part = dest.with_name(dest.name + ".part")
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir(parents=True)
    absent = []
    for entry in filter(None, listing.stdout.split(b"\0")):
        meta, path = entry.split(b"\t", 1)
        mode, kind, sha = meta.decode().split()
        name = path.decode("utf-8", "surrogateescape")
        if kind == "blob" and mode == LINK_MODE:
            sha = _link_target(git_dir, commit, name, sha)
            if sha is None:                  # a link to a folder, or out of the tree: a checkout's builder skips it
                continue
        elif kind != "blob":
            continue
        blob = _git(git_dir, "cat-file", "blob", sha)
        if blob.returncode != 0:
            absent.append(name)
            continue
        target = part / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(blob.stdout)
    part.rename(dest)
    return absent


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("git_dir")
    parser.add_argument("dest")
    parser.add_argument("paths", nargs="*", help="only these paths of the tree (default: all)")
    parser.add_argument("--commit", default="HEAD")
    args = parser.parse_intermixed_args(argv)          # PATHs may follow --commit
    try:
        absent = export(args.git_dir, args.dest, args.paths, args.commit)
    except UsageError as error:
        sys.exit(f"git_export: {error}")
    if absent:
        shown = ", ".join(absent[:3]) + (f" and {len(absent) - 3} more" if len(absent) > 3 else "")
        print(f"git_export: {args.git_dir}: {len(absent)} files are not in its object store, skipped: {shown}",
              file=sys.stderr)


if __name__ == "__main__":
    main()
