"""Crash-safe writes for mmengine's local file backend.

mmengine 0.10.7 writes checkpoints and the ``last_checkpoint`` pointer with a plain
``open(path, 'wb').write(...)``: a run killed while writing leaves a truncated file, and a
truncated pointer makes ``--resume auto`` fail. :class:`AtomicLocalBackend` writes to a
temporary file in the same folder, flushes it to disk and renames it over the target
(``os.replace`` is atomic on POSIX), so a reader sees either the old file or the whole new one.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from mmengine.fileio.backends import LocalBackend, register_backend
from mmengine.fileio.io import backend_instances


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(data: bytes, filepath: str | Path) -> None:
    """Write ``data`` to ``filepath`` all at once or not at all, with the permissions a plain
    ``open(filepath, 'wb')`` would give it."""
    folder = os.path.dirname(os.path.abspath(filepath))
    os.makedirs(folder, exist_ok=True)
    fd, partial = tempfile.mkstemp(dir=folder, prefix=f'.{os.path.basename(filepath)}.',
                                   suffix='.partial')
    try:
        # mkstemp creates the file readable by its owner only; open() applies the umask to 0o666.
        os.fchmod(fd, 0o666 & ~_current_umask())
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, filepath)
    except BaseException:
        if os.path.exists(partial):
            os.remove(partial)
        raise


class AtomicLocalBackend(LocalBackend):
    """mmengine's local backend with atomic ``put`` and ``put_text``."""

    def put(self, obj: bytes, filepath: str | Path) -> None:
        atomic_write(obj, filepath)

    def put_text(self, obj: str, filepath: str | Path, encoding: str = 'utf-8') -> None:
        atomic_write(obj.encode(encoding), filepath)


def register_atomic_local_backend() -> None:
    """Make ``AtomicLocalBackend`` the backend of local paths (checkpoints, last_checkpoint)."""
    register_backend('local', AtomicLocalBackend, force=True, prefixes='')
    # get_file_backend caches instances; drop cached plain local backends.
    for key in [k for k, v in backend_instances.items() if type(v) is LocalBackend]:
        del backend_instances[key]
