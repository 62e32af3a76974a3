"""Recipes of geosynth commands run step by step, and the report of what they left behind.

- :mod:`~geosynth.pipeline.recipe`: the YAML recipes (``pipelines/*.yaml``), loading,
  variables, skipping finished steps (``geosynth pipeline run``);
- :mod:`~geosynth.pipeline.report`: ``report.md`` and ``report.html`` of a pipeline's
  output folder, explaining every number.
"""

from geosynth.pipeline.recipe import (
    Pipeline,
    PipelineResult,
    Step,
    StepResult,
    bundled_pipeline,
    load_pipeline,
    run_pipeline,
)

__all__ = [
    "Pipeline",
    "PipelineResult",
    "Step",
    "StepResult",
    "bundled_pipeline",
    "load_pipeline",
    "run_pipeline",
]
