"""ICL vs fine-tuning alignment (seed icl-vs-gd-revisited; SPEC section 6): recording hooks, the metrics,
the analysis and its report."""

from icl_bench.analyses.alignment.analysis import AlignmentConfig, TaskAlignment, analyze
from icl_bench.analyses.alignment.hooks import Recorder, Recording
from icl_bench.analyses.alignment.report import render

__all__ = ["AlignmentConfig", "Recorder", "Recording", "TaskAlignment", "analyze", "render"]
