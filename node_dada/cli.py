"""``node-dada``: the command line.

- ``node-dada fit|validate|test|predict --config configs/<file>.yaml``: LightningCLI
  (model :class:`~node_dada.models.DADAModule`, any DataModule of ``node_dada.data``).
- ``node-dada predict --guide RGB --source DEPTH --scale 8 [--checkpoint ...]``: a
  user's own pair of files (see :mod:`node_dada.commands.upsample`).
- ``node-dada benchmark ...``: every method on the same crops
  (:mod:`node_dada.commands.benchmark`).
- ``node-dada data list|download NAME --root DIR``: the datasets, downloaded into the
  layout their loaders read (:mod:`node_dada.commands.data`).

Every command that is not a LightningCLI subcommand is one module of
:mod:`node_dada.commands` with its parser and a ``main(argv) -> int``; the library
module it drives holds the work and no argparse.

A ``NodeDadaError`` ends the command with one line on stderr and exit code 2; so do
a configuration the parser refuses (unknown key, bad value, missing config file) and
a trainer setting Lightning refuses. The LightningCLI part, with its checkpoint
policy, is :mod:`node_dada.training`.
"""

from __future__ import annotations

import sys

from node_dada.errors import NodeDadaError, error_line
from node_dada.training import ConfigError, run

__all__ = ["main", "run_lightning_cli"]

#: :func:`node_dada.training.run` under its former name.
run_lightning_cli = run

#: The commands that are not LightningCLI subcommands: name -> (module, one line).
_COMMANDS = {
    "upsample": ("node_dada.commands.upsample",
                 "upsample your own files: --guide RGB --source DEPTH --scale S "
                 "[--checkpoint NAME]"),
    "benchmark": ("node_dada.commands.benchmark",
                  "every method on the same crops: tables and figures"),
    "data": ("node_dada.commands.data",
             "list the datasets, or download one: data download NAME --root DIR"),
    "sweep": ("node_dada.commands.sweep", "an ablation grid from configs/sweeps/<name>.yaml"),
    "demo": ("node_dada.commands.demo",
             "the embedded Motorcycle scene at x4-x32 (what make demo runs)"),
    "tuning": ("node_dada.commands.tuning",
               "tune the classic filters' parameters on the validation split"),
    "card": ("node_dada.commands.card", "write the model card of the shipped models"),
    "release": ("node_dada.commands.release", "ship a trained checkpoint inside the package"),
}
_LIGHTNING = {
    "fit": "train a model: --config configs/<file>.yaml (--ckpt_path last resumes)",
    "validate": "validation metrics of a checkpoint: --config ... --ckpt_path PATH|last",
    "test": "test metrics of a checkpoint: --config ... --ckpt_path PATH|last",
    "predict": "a checkpoint on a DataModule's split (--config ...), or your own files "
               "(--guide ... --source ..., as upsample)",
}
#: jsonargparse can explain a refused value over dozens of lines; keep the start.
_MAX_CONFIG_MESSAGE = 400


def usage() -> str:
    """``node-dada --help``: every command with one line each."""
    width = max(map(len, [*_LIGHTNING, *_COMMANDS]))
    lines = ["usage: node-dada COMMAND [options]   (node-dada COMMAND --help for its options)",
             "", "Guided depth super-resolution by deep anisotropic diffusion.", "",
             "Training and evaluation of models (LightningCLI):"]
    lines += [f"  {name:<{width}}  {text}" for name, text in _LIGHTNING.items()]
    lines += ["", "Everything else:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in _COMMANDS.items()]
    lines += ["", "  --version   print the version", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run a ``node-dada`` command; errors end with one line on stderr and exit code 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv else ""
    if command in ("", "-h", "--help", "help"):
        (sys.stdout if command else sys.stderr).write(usage())
        return 0 if command else 2
    if command == "--version":
        from node_dada import __version__

        sys.stdout.write(f"node-dada {__version__}\n")
        return 0
    try:
        if command == "predict" and any(a.startswith("--guide") for a in argv[1:]):
            command, argv = "upsample", ["upsample", *argv[1:]]
        if command in _COMMANDS:
            import importlib

            return int(importlib.import_module(_COMMANDS[command][0]).main(argv[1:]) or 0)
        if command.startswith("-") or command not in _LIGHTNING:
            raise ConfigError(f"unknown command {command!r}; the commands are "
                              f"{', '.join([*_LIGHTNING, *_COMMANDS])}")
        run(argv)
    except ConfigError as error:
        where = f"node-dada {command}" if command in _LIGHTNING else "node-dada"
        message = error_line(error, _MAX_CONFIG_MESSAGE)
        sys.stderr.write(f"node-dada: error: {message} (see `{where} --help`)\n")
        return 2
    except NodeDadaError as error:
        sys.stderr.write(f"node-dada: error: {error_line(error)}\n")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
