"""Owner-only files and folders for what the portal keeps on disk (``instance/``: databases, keys, state).

The instance folder holds the SQLite database (users, password hashes, encrypted secrets), the generated keys and
the Demo ERP's and Tryton connector's state: it is created ``0700`` and the files in it ``0600``, whatever the
process umask says. Existing ones are tightened when the portal starts or opens them (only when this process owns
them: a folder or file someone else set up is left alone, with a warning).

SQLite creates its ``-wal`` and ``-shm`` files with the mode of the database file, so a database created through
:func:`private_file` (or tightened by it) keeps its journal owner-only too; :func:`private_sqlite_files` tightens
journals left from before.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def _tighten(path: Path, mode: int) -> None:
    try:
        info = path.stat()
    except FileNotFoundError:
        return
    if stat.S_IMODE(info.st_mode) & 0o077 == 0:
        return
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        log.warning("%s is readable by other users (mode %o) and not ours to change", path,
                    stat.S_IMODE(info.st_mode))
        return
    try:
        os.chmod(path, mode)
    except OSError as exc:
        log.warning("could not make %s owner-only: %s", path, exc)


def private_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` (and missing parents) as an owner-only folder, or tighten it when it exists. Only the last
    folder is made ``0700``: parents keep the usual mode."""
    folder = Path(path)
    if not folder.exists():
        folder.parent.mkdir(parents=True, exist_ok=True)
        try:
            folder.mkdir(mode=DIR_MODE)
        except FileExistsError:
            pass
        else:
            os.chmod(folder, DIR_MODE)  # mkdir's mode is filtered by the umask; chmod is not
            return folder
    _tighten(folder, DIR_MODE)
    return folder


def private_file(path: str | os.PathLike) -> Path:
    """Make sure ``path`` exists as an owner-only file (created empty with ``0600``: SQLite takes an empty file for a
    new database), or tighten it when it exists."""
    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        _tighten(file, FILE_MODE)
    else:
        os.close(fd)
        os.chmod(file, FILE_MODE)
    return file


def private_sqlite_files(path: str | os.PathLike) -> None:
    """An owner-only SQLite database at ``path`` (created if missing) and owner-only journals if they exist."""
    database = private_file(path)
    for suffix in SQLITE_COMPANIONS:
        _tighten(Path(f"{database}{suffix}"), FILE_MODE)
