"""The evaluation path shared by the benchmark, the validation search and the sweeps:
every method on the same deterministic crops, in one table.

- :mod:`~node_dada.evaluation.crops`: the scenes of a dataset split
  (:func:`load_scenes`) and their evaluation crops through the data pipeline
  (:func:`iter_crops`, :func:`count_crops`, :func:`eval_samples`), as :class:`Crop`.
- :mod:`~node_dada.evaluation.methods`: the methods of the table (:func:`method_specs`,
  :class:`MethodSpec`) and trained checkpoints as methods (:func:`checkpoint_method`).
- :mod:`~node_dada.evaluation.runner`: the run over crops, scales and methods
  (:func:`run_benchmark`) and what it yields (:class:`BenchmarkRow`,
  :class:`CropError`, :class:`FigureCrop`); the errors are accumulated by
  :mod:`node_dada.metrics`.
- :mod:`~node_dada.evaluation.report`: the CSV, Markdown and figure writers.

The command line is :mod:`node_dada.commands.benchmark` (``node-dada benchmark``).
"""

from node_dada.evaluation.crops import (
    DATASETS,
    DEFAULT_CROP_SIZE,
    DEFAULT_MIDDLEBURY_ROOT,
    DEFAULT_SCALES,
    Crop,
    count_crops,
    eval_samples,
    iter_crops,
    load_scenes,
    raw_guide,
)
from node_dada.evaluation.methods import (
    DEFAULT_METHODS,
    MethodSpec,
    checkpoint_method,
    method_specs,
)
from node_dada.evaluation.report import (
    DATASET_TITLES,
    crop_pivot,
    mae_pivot,
    save_figure,
    write_crop_errors,
    write_csv,
    write_markdown,
)
from node_dada.evaluation.runner import (
    DEFAULT_FIGURE_CROPS,
    BenchmarkRow,
    CropError,
    FigureCrop,
    run_benchmark,
)

__all__ = [
    "DATASETS",
    "DATASET_TITLES",
    "DEFAULT_CROP_SIZE",
    "DEFAULT_FIGURE_CROPS",
    "DEFAULT_METHODS",
    "DEFAULT_MIDDLEBURY_ROOT",
    "DEFAULT_SCALES",
    "BenchmarkRow",
    "Crop",
    "CropError",
    "FigureCrop",
    "MethodSpec",
    "checkpoint_method",
    "count_crops",
    "crop_pivot",
    "eval_samples",
    "iter_crops",
    "load_scenes",
    "mae_pivot",
    "method_specs",
    "raw_guide",
    "run_benchmark",
    "save_figure",
    "write_crop_errors",
    "write_csv",
    "write_markdown",
]
