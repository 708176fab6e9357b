from .layer_decay import ConvNeXtLayerDecayOptimWrapperConstructor

__all__ = ['ConvNeXtLayerDecayOptimWrapperConstructor']
