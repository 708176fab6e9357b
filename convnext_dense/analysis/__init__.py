"""Model and run analysis: parameter and FLOP counts of a config's model, training curves."""
from .complexity import build_model_for_analysis, default_flops_shape, model_complexity
from .curves import History, find_scalars, load_history, plot_curves, read_scalars

__all__ = ['History', 'build_model_for_analysis', 'default_flops_shape', 'find_scalars',
           'load_history', 'model_complexity', 'plot_curves', 'read_scalars']
