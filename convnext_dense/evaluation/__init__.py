"""Evaluation of saved predictions: COCO result files against an annotation file."""
from .coco_eval import (
                        IOU_TYPES,
                        METRIC_NAMES,
                        evaluate,
                        evaluate_files,
                        format_summary,
                        load_annotations,
                        load_results,
                        save_summary,
)

__all__ = ['IOU_TYPES', 'METRIC_NAMES', 'evaluate', 'evaluate_files', 'format_summary',
           'load_annotations', 'load_results', 'save_summary']
