from .compat import guard_mmpretrain_import, import_mmpretrain
from .torch_load import (
                         UnsafeCheckpointError,
                         allow_mmengine_checkpoints,
                         read_checkpoint,
                         register_mmengine_loader,
)

__all__ = ['UnsafeCheckpointError', 'allow_mmengine_checkpoints', 'guard_mmpretrain_import',
           'import_mmpretrain', 'read_checkpoint', 'register_mmengine_loader']
