"""Crash-safe writes: single files, folders of files, and mmengine's local file backend.

mmengine 0.10.7 writes checkpoints through its local file backend with a plain
``open(path, 'wb').write(...)``, and ``CheckpointHook`` writes the ``last_checkpoint`` pointer
with ``open(path, 'w')``: a run killed while writing leaves a truncated file, and a full disk
an emptied pointer, either of which ``--resume`` then fails on. :class:`AtomicLocalBackend`
writes to a temporary file in the same folder, flushes it to disk and renames it over the
target (``os.replace`` is atomic on POSIX), so a reader sees either the old file or the whole
new one; :func:`atomic_open` does the same for the pointer, and :func:`atomic_write_files` for
the files of a model folder (a Hugging Face export).
"""
from __future__ import annotations

import builtins
import errno
import io
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
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
    if os.path.lexists(folder) and not os.path.isdir(folder):
        # makedirs would say "File exists", which reads as if nothing were wrong
        raise NotADirectoryError(errno.ENOTDIR, 'the folder to write into is not a folder',
                                 folder)
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


def atomic_write_files(out_dir: str | Path,
                       files: Mapping[str, Callable[[str], object]]) -> list[str]:
    """Write ``{name: writer(path)}`` into a scratch folder beside ``out_dir``, then move each
    file in: a failure leaves no half-written file in ``out_dir``. Returns the paths written,
    sorted."""
    out_dir = os.path.abspath(out_dir)
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    scratch = tempfile.mkdtemp(dir=parent, prefix=f'.{os.path.basename(out_dir)}.')
    try:
        for name, write in files.items():
            write(os.path.join(scratch, name))
        os.makedirs(out_dir, exist_ok=True)
        umask = _current_umask()
        written = []
        for name in sorted(os.listdir(scratch)):
            # safetensors writes owner-only files; a model folder is meant to be shared
            os.chmod(os.path.join(scratch, name), 0o666 & ~umask)
            os.replace(os.path.join(scratch, name), os.path.join(out_dir, name))
            written.append(os.path.join(out_dir, name))
        return written
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


class _AtomicTextFile(io.StringIO):
    """Text written to it goes to its file atomically when it is closed without an error."""

    def __init__(self, filepath, encoding: str | None) -> None:
        super().__init__()
        self._filepath = filepath
        self._encoding = encoding or 'utf-8'

    def close(self) -> None:
        if not self.closed:
            data = self.getvalue().encode(self._encoding)
            super().close()
            atomic_write(data, self._filepath)

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is not None:  # the old file stays as it was
            super().close()
        else:
            self.close()


def atomic_open(file, mode: str = 'r', *args, **kwargs):
    """``open``, except that a file opened for writing text (``'w'``) by path is written
    atomically when it is closed, and not at all if its ``with`` block raises."""
    if mode in ('w', 'wt') and isinstance(file, (str, os.PathLike)) and not args:
        return _AtomicTextFile(file, kwargs.get('encoding'))
    return builtins.open(file, mode, *args, **kwargs)


class AtomicLocalBackend(LocalBackend):
    """mmengine's local backend with atomic ``put`` and ``put_text``."""

    def put(self, obj: bytes, filepath: str | Path) -> None:
        atomic_write(obj, filepath)

    def put_text(self, obj: str, filepath: str | Path, encoding: str = 'utf-8') -> None:
        atomic_write(obj.encode(encoding), filepath)


def register_atomic_local_backend() -> None:
    """Make ``AtomicLocalBackend`` the backend of local paths (checkpoints) and write
    ``CheckpointHook``'s ``last_checkpoint`` pointer atomically."""
    from mmengine.hooks import checkpoint_hook

    register_backend('local', AtomicLocalBackend, force=True, prefixes='')
    # CheckpointHook opens one file, the pointer, by the built-in name `open`: a module global
    # of that name takes its place.
    checkpoint_hook.open = atomic_open
    # get_file_backend caches instances; drop cached plain local backends.
    for key in [k for k, v in backend_instances.items() if type(v) is LocalBackend]:
        del backend_instances[key]
