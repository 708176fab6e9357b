"""Evaluation: COCO box and mask AP of saved result files (:mod:`.coco_eval`,
``tools/coco_eval.py``) and the ``FastCocoMetric`` evaluator for configs (:mod:`.metric`), both
with faster-coco-eval (fed in bulk, :mod:`.bulk`) or pycocotools; COCO annotation files read
with errors that name what is wrong (:mod:`.annotations`)."""
from .annotations import check_coco_annotation
from .coco_eval import (
                        BACKENDS,
                        DEFAULT_BACKEND,
                        IOU_TYPES,
                        METRIC_NAMES,
                        evaluate,
                        evaluate_files,
                        format_summary,
                        load_annotations,
                        load_results,
                        pycocotools_summary,
                        run_cocoeval,
                        save_summary,
                        summarize,
)
from .metric import build_fast_coco_metric

__all__ = ['BACKENDS', 'DEFAULT_BACKEND', 'IOU_TYPES', 'METRIC_NAMES', 'build_fast_coco_metric',
           'check_coco_annotation', 'evaluate', 'evaluate_files', 'format_summary',
           'load_annotations', 'load_results', 'pycocotools_summary', 'run_cocoeval',
           'save_summary', 'summarize']
