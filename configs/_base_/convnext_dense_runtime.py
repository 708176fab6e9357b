# What every config of this repository adds to mmdet's / mmseg's default_runtime.py: the plugin
# (its models, hooks, metric and optimizer constructor register on import), and long runs that
# fail safe (docs/long_runs.md): stop at the first non-finite loss or gradient (with fp16 AMP:
# after 50 consecutive steps the loss scaler skipped), save a resumable checkpoint on SIGTERM
# (Slurm preemption, scancel), stop when a checkpoint cannot be written.
custom_imports = dict(imports=['convnext_dense'], allow_failed_imports=False)
custom_hooks = [
    dict(type='NonFiniteCheckHook', check_grad_norm=True, max_skipped_steps=50),
    dict(type='StopSignalHook', signals=('SIGTERM', )),
    dict(type='CheckpointWriteCheckHook'),
]
