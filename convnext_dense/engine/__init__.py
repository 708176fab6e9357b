from .atomic_io import (
    AtomicLocalBackend,
    atomic_open,
    atomic_write,
    register_atomic_local_backend,
)
from .compat import allow_bf16_nms, guard_mmpretrain_import, import_mmpretrain
from .fail_safe import (
    CheckpointWriteCheckHook,
    CheckpointWriteError,
    NonFiniteCheckHook,
    NonFiniteTrainingError,
    StopSignalHook,
)
from .fast_path import (
    BF16OptimWrapper,
    FastPathHook,
    apply_fast_path,
    configure_fast_path,
)
from .hooks import EvalProgressBarHook, LoadCheckpointHook, RNGStateHook
from .torch_load import (
    UnsafeCheckpointError,
    allow_mmengine_checkpoints,
    read_checkpoint,
    register_mmengine_loader,
)

__all__ = ['AtomicLocalBackend', 'BF16OptimWrapper', 'CheckpointWriteCheckHook',
           'CheckpointWriteError', 'FastPathHook', 'NonFiniteCheckHook', 'NonFiniteTrainingError',
           'StopSignalHook', 'apply_fast_path', 'atomic_open',
           'configure_fast_path', 'EvalProgressBarHook', 'LoadCheckpointHook', 'RNGStateHook',
           'UnsafeCheckpointError', 'allow_bf16_nms', 'allow_mmengine_checkpoints',
           'atomic_write', 'guard_mmpretrain_import', 'import_mmpretrain', 'read_checkpoint',
           'register_atomic_local_backend', 'register_mmengine_loader']
