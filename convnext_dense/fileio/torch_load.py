"""Loading checkpoints safely on torch >= 2.6, where ``torch.load`` defaults to
``weights_only=True``.

mmengine 0.10.7 saves, besides tensors, a ``meta`` and ``message_hub`` holding numpy arrays and
scalars and its own ``HistoryBuffer``; the weights-only unpickler refuses those, which breaks
``--resume`` and ``load_from``. Instead of turning ``weights_only`` off (which would let any
checkpoint run code), :func:`allow_mmengine_checkpoints` allow-lists exactly the types such a
checkpoint contains. ``HistoryBuffer`` pickles its statistics methods by qualified name, which
pickle protocol 2 writes as ``builtins.getattr(HistoryBuffer, 'min')``; allow-listing
``getattr`` itself would give a crafted pickle arbitrary attribute access, so a narrow stand-in
that resolves only HistoryBuffer's registered statistics methods is registered under that
name.

:func:`read_checkpoint` reads a path or URL with ``weights_only=True`` and turns torch's errors
into messages that name the file and say what to do. It is also registered as mmengine's loader
for local files, so the Runner's ``resume`` and ``load_from`` get the same messages.

onedl-mmengine (the maintained fork) loads through ``mmengine.runner.checkpoint._safe_torch_load``,
which retries with ``weights_only=False`` when the weights-only load fails, so a checkpoint that
carries code runs it, and whose weights-only attempt allow-lists ``builtins.getattr`` itself. Its
local-file loader is replaced as above; :func:`register_mmengine_loader` also replaces
``_safe_torch_load`` for the other schemes that call it (``open-mmlab://`` files in
``MMENGINE_HOME``, ``s3://``/``petrel://``, ``pavi://``) with one that never falls back.
"""
from __future__ import annotations

import os
import pickle
import re
from typing import Any

import mmengine.runner.checkpoint as mmengine_checkpoint
import numpy as np
import torch
from mmengine.runner.checkpoint import CheckpointLoader

_TRUST_HINT = ('If you trust the file and its source, load it on purpose with '
               '`torch.load(path, weights_only=False)` and save the tensors again with '
               '`torch.save(state_dict, new_path)`.')


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint's pickle references globals outside the allow-list (it could run code)."""


_DEFAULT_STATISTICS = frozenset({'min', 'max', 'current', 'mean'})


def _history_buffer_statistic(owner: Any, name: str) -> Any:
    """Stand-in for ``builtins.getattr``: resolves only ``HistoryBuffer.<statistics method>``."""
    from mmengine.logging import HistoryBuffer
    # The built-in statistics are registered only when a first HistoryBuffer is created.
    allowed = _DEFAULT_STATISTICS | set(HistoryBuffer._statistics_methods)
    if owner is HistoryBuffer and isinstance(name, str) and name in allowed:
        return getattr(HistoryBuffer, name)
    raise UnsafeCheckpointError(
        f'getattr({owner!r}, {name!r}) is not allowed while loading a checkpoint: only the '
        'statistics methods of mmengine.logging.HistoryBuffer are resolved')


def _numpy_globals() -> list:
    try:  # numpy >= 2
        from numpy._core.multiarray import _reconstruct, scalar
        module = 'numpy._core.multiarray'
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct, scalar
        module = 'numpy.core.multiarray'
    safe: list = [(_reconstruct, f'{module}._reconstruct'), (scalar, f'{module}.scalar'),
                  np.ndarray, np.dtype]
    if hasattr(np, 'dtypes'):  # numpy >= 1.25 pickles dtypes with their classes
        safe += [cls for cls in vars(np.dtypes).values()
                 if isinstance(cls, type) and issubclass(cls, np.dtype)]
    return safe


def allow_mmengine_checkpoints() -> None:
    """Allow-list the types of mmengine checkpoints for ``torch.load(weights_only=True)``."""
    from mmengine.logging import HistoryBuffer
    safe = _numpy_globals() + [HistoryBuffer, (_history_buffer_statistic, 'builtins.getattr')]
    torch.serialization.add_safe_globals(safe)


def _refusal_reason(message: str) -> str:
    """The line of torch's long weights-only message that names what was refused."""
    for line in message.splitlines():
        if 'GLOBAL' in line or 'not allowed' in line or 'Unsupported' in line:
            return line.strip()
    return message.splitlines()[0].strip()


def read_checkpoint(filename: str, map_location: str | torch.device | None = 'cpu') -> Any:
    """Read a checkpoint from a local path or an http(s) URL with ``weights_only=True``.

    ``.safetensors`` files are read with safetensors. Raises ``FileNotFoundError`` for a
    missing file, :class:`UnsafeCheckpointError` for a pickle that would run code, and
    ``ValueError`` for a file that is not a checkpoint, each naming the file.
    """
    filename = os.fspath(filename)
    if filename.startswith(('http://', 'https://')):
        return torch.hub.load_state_dict_from_url(filename, map_location=map_location,
                                                  weights_only=True, check_hash=False)
    if not os.path.isfile(filename):
        raise FileNotFoundError(f'checkpoint file {filename!r} does not exist')
    if filename.endswith('.safetensors'):
        from safetensors.torch import load_file
        return load_file(filename, device=str(map_location or 'cpu'))
    return _load_weights_only(filename, repr(filename), map_location)


def _load_weights_only(source: Any, name: str,
                       map_location: str | torch.device | None) -> Any:
    """``torch.load(source, weights_only=True)`` with errors that name ``name``."""
    try:
        return torch.load(source, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's weights-only unpickler refused a global (a class or function to call)
        if 'Weights only load failed' in str(error) and re.search(r'GLOBAL|global|not allowed',
                                                                   str(error)):
            raise UnsafeCheckpointError(
                f'refusing to load {name}: its pickle references code outside the '
                f'allow-list of checkpoint types, so loading it could run that code '
                f'({_refusal_reason(str(error))}). {_TRUST_HINT}') from error
        raise ValueError(f'{name} is not a PyTorch checkpoint: {error}') from error
    except Exception as error:  # noqa: BLE001  (the unpickler fails in many ways on garbage)
        raise ValueError(f'{name} is not a PyTorch checkpoint (or it is truncated): '
                         f'{error}') from error


def load_from_local(filename: str, map_location: str | torch.device | None = None) -> Any:
    return read_checkpoint(os.path.expanduser(filename), map_location)


def load_without_fallback(file: Any, map_location: str | torch.device | None = None,
                          weights_only: bool | None = None) -> Any:
    """Stand-in for onedl-mmengine's ``_safe_torch_load`` (same arguments): a path or an open
    file is read with ``weights_only=True`` and a pickle that would run code is refused with
    :class:`UnsafeCheckpointError`, never retried with ``weights_only=False``. A caller that
    passes ``weights_only=False`` itself gets it, as from ``torch.load``."""
    if weights_only is False:
        return torch.load(file, map_location=map_location, weights_only=False)
    if isinstance(file, (str, os.PathLike)):
        return read_checkpoint(os.path.expanduser(os.fspath(file)), map_location)
    name = repr(file.name) if isinstance(getattr(file, 'name', None), str) else 'a stream'
    return _load_weights_only(file, f'the checkpoint read from {name}', map_location)


def register_mmengine_loader() -> None:
    """Route mmengine's checkpoint loading (resume, load_from, ``init_cfg=dict(type=
    'Pretrained')``) of local files through :func:`read_checkpoint`, and take out
    onedl-mmengine's ``weights_only=False`` fallback (:func:`load_without_fallback`)."""
    CheckpointLoader.register_scheme(prefixes='', loader=load_from_local, force=True)
    if hasattr(mmengine_checkpoint, '_safe_torch_load'):  # onedl-mmengine >= 0.10.8
        mmengine_checkpoint._safe_torch_load = load_without_fallback
