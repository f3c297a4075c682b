"""``node-dada``: the command line.

- ``node-dada fit|validate|test|predict --config configs/<file>.yaml``: LightningCLI
  (model :class:`~node_dada.models.DADAModule`, any DataModule of ``node_dada.data``).
- ``node-dada predict --guide RGB --source DEPTH --scale 8 [--checkpoint ...]``: a
  user's own pair of files (see :mod:`node_dada.predict_files`).
- ``node-dada benchmark ...``: every method on the same crops (:mod:`node_dada.benchmark`).

A ``NodeDadaError`` ends the command with one line on stderr and exit code 2.
"""

from __future__ import annotations

import sys

from node_dada.errors import NodeDadaError

__all__ = ["main", "run_lightning_cli"]


def run_lightning_cli(argv: list[str]) -> None:
    """LightningCLI over ``DADAModule`` and the DataModules, with a forced ``last`` checkpoint."""
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.cli import LightningCLI

    from node_dada.data.datamodules import GuidedDepthDataModule
    from node_dada.models.dada_module import DADAModule

    class NodeDadaCLI(LightningCLI):
        def add_arguments_to_parser(self, parser) -> None:  # noqa: ANN001
            # Always keep `last.ckpt`, so that `--ckpt_path last` resumes any run.
            parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
            parser.set_defaults({"checkpoint.save_last": True})
            # One value for the guide's channel count: the data converts guides to what
            # the model's extractor takes (grayscale, RGB, multispectral, ...).
            parser.link_arguments("model.guide_channels", "data.init_args.guide_channels")

    NodeDadaCLI(
        DADAModule,
        GuidedDepthDataModule,
        subclass_mode_data=True,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        args=argv,
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv else ""
    try:
        if command == "benchmark":
            from node_dada import benchmark

            return benchmark.main(argv[1:])
        if command == "sweep":
            from node_dada import sweep

            return sweep.main(argv[1:])
        if command == "predict" and any(a.startswith("--guide") for a in argv[1:]):
            from node_dada import predict_files

            return predict_files.main(argv[1:])
        run_lightning_cli(argv)
    except NodeDadaError as error:
        sys.stderr.write(f"node-dada: error: {error}\n")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
