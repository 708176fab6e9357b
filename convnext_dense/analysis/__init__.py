"""Model analysis: parameter and FLOP counts of a config's model."""
from .complexity import build_model_for_analysis, default_flops_shape, model_complexity

__all__ = ['build_model_for_analysis', 'default_flops_shape', 'model_complexity']
