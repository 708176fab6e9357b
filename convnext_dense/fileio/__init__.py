"""Reading and writing files safely: checkpoints read with ``weights_only=True`` and errors that
name the file (:mod:`.torch_load`), JSON files likewise (:mod:`.json_file`), and writes that land
whole or not at all (:mod:`.atomic`).

The bottom layer of the package (see ``docs/architecture.md``): imports torch and mmengine only,
so that :mod:`convnext_dense.checkpoint`, :mod:`convnext_dense.evaluation`, the hooks and the
exports share one implementation."""
from .atomic import (
    AtomicLocalBackend,
    atomic_open,
    atomic_write,
    atomic_write_files,
    register_atomic_local_backend,
)
from .json_file import read_json
from .torch_load import (
    UnsafeCheckpointError,
    allow_mmengine_checkpoints,
    read_checkpoint,
    register_mmengine_loader,
)

__all__ = ['AtomicLocalBackend', 'UnsafeCheckpointError', 'allow_mmengine_checkpoints',
           'atomic_open', 'atomic_write', 'atomic_write_files', 'read_checkpoint', 'read_json',
           'register_atomic_local_backend', 'register_mmengine_loader']
