"""State files readable by the service's own user only: files 0600 in folders 0700.

The state folders hold case ids, sealed contacts, keys, access logs and password hashes. Other
users of the machine must not read them, whatever the umask. SQLite creates its -wal, -shm and
-journal files with the mode of the database file, so a database created through
`private_file` keeps all of them 0600.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

FOLDER_MODE = 0o700
FILE_MODE = 0o600


def private_folder(path: Path) -> Path:
    """Create `path` (and missing parents) as 0700; tighten it to 0700 if it exists and is ours."""
    path = Path(path)
    path.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    _tighten(path, FOLDER_MODE)
    return path


def private_file(path: Path) -> Path:
    """Make sure `path` exists with mode 0600 in a 0700 folder (created empty if missing)."""
    path = Path(path)
    private_folder(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
    os.close(fd)
    _tighten(path, FILE_MODE)
    return path


def _tighten(path: Path, mode: int) -> None:
    info = path.stat()
    # Someone else's folder (a shared parent such as /tmp) is theirs to set; ours we tighten.
    if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) != mode:
        os.chmod(path, mode)


def is_private(path: Path) -> bool:
    """True when neither group nor others have any access to `path`."""
    return stat.S_IMODE(Path(path).stat().st_mode) & 0o077 == 0
