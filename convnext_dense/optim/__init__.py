from .bf16 import BF16OptimWrapper
from .layer_decay import ConvNeXtLayerDecayOptimWrapperConstructor

__all__ = ['BF16OptimWrapper', 'ConvNeXtLayerDecayOptimWrapperConstructor']
