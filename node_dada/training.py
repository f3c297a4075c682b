"""Training and evaluation of models: LightningCLI over ``DADAModule`` and the
DataModules, with the project's checkpoint policy, as a function that raises.

``node-dada fit|validate|test|predict`` (:mod:`node_dada.cli`) and the fit cells of
a sweep (:mod:`node_dada.sweep`) both call :func:`run`; an error leaves as an
exception (:class:`ConfigError` for a refused command line or config, a
:class:`~node_dada.errors.NodeDadaError` for bad data or a failed solve), never as a
printed message to be read back.

Checkpoint policy: ``last.ckpt`` follows every epoch
(:class:`~node_dada.models.checkpointing.LastCheckpoint`), checkpoints are written
atomically and each epoch's data is seeded from the seed and the epoch, so
``--ckpt_path last`` resumes a killed run exactly where its last checkpoint left it
(:mod:`node_dada.models.checkpointing`); ``--ckpt_path last`` finds the newest
checkpoint of the run even when no ``checkpoint.dirpath`` is set.

Composed configs: a config file may start with ``base: [a.yaml, b.yaml]`` (paths
relative to it); :func:`expand_configs` reads those first, in order, then the file's
own keys, as if given as ``--config a.yaml --config b.yaml --config <rest>`` (later
values override earlier ones, nested keys merge). ``configs/base/`` holds the files
the shipped configs are composed from.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from node_dada.errors import DataError

__all__ = ["ConfigError", "expand_configs", "run"]

#: ``--ckpt_path`` values that Lightning resolves itself.
_CKPT_KEYWORDS = ("last", "best", "hpc", "registry")


class ConfigError(Exception):
    """The command line or config file was refused (one line, exit code 2)."""


def _run_base(config: Any) -> Path:
    """Where the runs of ``config`` keep their checkpoints when ``checkpoint.dirpath`` is
    unset: ``<logger save_dir>/<name>/version_*/checkpoints`` (Lightning's layout), else
    ``<default_root_dir>/lightning_logs/version_*/checkpoints``: the folder that holds
    the ``version_*`` folders."""
    root = Path(str(config.get("trainer.default_root_dir") or "."))
    logger = config.get("trainer.logger")
    if isinstance(logger, list):
        logger = logger[0] if logger else None
    init = getattr(logger, "init_args", None) if logger not in (None, True, False) else None
    if init is not None:
        save_dir = Path(str(init.get("save_dir") or root))
        name = init.get("name")
        base = save_dir / str(name) if name else save_dir
    else:
        base = root / "lightning_logs"
    return base


def _newest_checkpoint(ckpt_path: object, dirpath: object, config: Any = None, *,
                       required: bool = False) -> object:
    """``--ckpt_path last`` -> the newest checkpoint file of the run.

    With ``--checkpoint.dirpath`` that folder is searched, else every version folder
    of the run's logger (the shipped configs set none: Lightning itself would look in
    a new, empty version folder and silently start or test from scratch). Lightning
    saves an epoch's checkpoint, then ``last.ckpt``; a run killed between the two has
    a newer checkpoint than ``last.ckpt`` (or none at all, if it was the first), and
    Lightning's ``last`` would ignore it.

    Nothing found: ``fit`` starts a new run (``--ckpt_path last`` means "start or
    resume", so one command serves a job that is restarted until it ends); with
    ``required`` (validate, test, predict) it is an error.
    """
    if str(ckpt_path) != "last":
        return ckpt_path
    if dirpath:
        folders, where = [Path(str(dirpath))], str(dirpath)
    elif config is not None:
        base = _run_base(config)
        folders, where = sorted(base.glob("version_*/checkpoints")), f"{base}/version_*/checkpoints"
    else:
        return ckpt_path
    found = sorted((path for folder in folders if folder.is_dir()
                    for path in folder.glob("*.ckpt")),
                   key=lambda p: (p.stat().st_mtime_ns, p.name.startswith("last")))
    if not found and not required:
        return ckpt_path
    if not found:
        raise DataError(
            f"--ckpt_path last: found no checkpoint in {where}; train first (node-dada fit "
            "with the same config) or pass --ckpt_path PATH to a .ckpt file")
    return str(found[-1])


def _continue_version(config: Any, checkpoint: object) -> None:
    """A fit resumed by ``--ckpt_path last`` logs into the version folder it resumes
    (the logger's ``version`` set to that folder's name) instead of a new one, so that
    its curves continue where they stopped and its checkpoint callback restores the
    best score so far (in a new folder Lightning reloads only the best path, and the
    next ``best-*.ckpt`` would be the best of the new folder alone). Only for a
    logger given with ``init_args`` and no ``version`` of its own."""
    logger = config.get("trainer.logger")
    init = getattr(logger, "init_args", None) if logger not in (None, True, False) \
        and not isinstance(logger, list) else None
    if init is None or init.get("version") is not None:
        return
    folder = Path(str(checkpoint)).parent.parent
    if folder.name.startswith("version_") and folder.parent == _run_base(config):
        init["version"] = folder.name


def _check_ckpt_path(ckpt_path: object) -> None:
    """Refuse a missing or untrusted ``--ckpt_path`` before Lightning unpickles it."""
    if not ckpt_path or str(ckpt_path) in _CKPT_KEYWORDS or str(ckpt_path).startswith(
            "registry:"):
        return
    from node_dada.models.inference import load_checkpoint_file

    path = Path(str(ckpt_path))
    if not path.is_file():
        raise DataError(f"--ckpt_path: expected a checkpoint file at {path}, found nothing; "
                        "use --ckpt_path last to resume from the newest checkpoint")
    load_checkpoint_file(path)  # weights-only: a pickle that would run code is refused


def _composed(path: Path, seen: tuple[Path, ...]) -> list[str]:
    """``--config`` values that stand for ``path``: its bases (recursively), then the
    file itself, or its keys without ``base`` as a YAML string when it has bases."""
    import yaml

    path = path.resolve()
    if path in seen:
        chain = " -> ".join(str(p) for p in (*seen, path))
        raise ConfigError(f"config {path}: its `base:` files include it again ({chain})")
    try:
        content = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        content = None  # the parser reads it again and reports the problem in its words
    if not isinstance(content, dict) or "base" not in content:
        return [str(path)]
    bases = content.pop("base")
    bases = [bases] if isinstance(bases, str) else bases
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"config {path}: `base:` expected a file or a list of files "
                          f"(relative to the config), got {bases!r}")
    values: list[str] = []
    for base in bases:
        base_path = path.parent / base
        if not base_path.is_file():
            raise ConfigError(f"config {path}: its base {base!r} does not exist "
                              f"(looked for {base_path})")
        values += _composed(base_path, (*seen, path))
    if content:
        values.append(yaml.safe_dump(content, sort_keys=False))
    return values


def expand_configs(argv: list[str]) -> list[str]:
    """``argv`` with every ``--config``/``-c`` file that has ``base:`` replaced by its
    bases and its own keys, in that order (see the module docstring)."""
    expanded: list[str] = []
    index = 0
    while index < len(argv):
        arg = argv[index]
        value = None
        if arg in ("--config", "-c") and index + 1 < len(argv):
            value, index = argv[index + 1], index + 2
        elif arg.startswith("--config="):
            value, index = arg.split("=", 1)[1], index + 1
        else:
            expanded.append(arg)
            index += 1
            continue
        path = Path(value)
        parts = _composed(path, ()) if path.suffix in (".yaml", ".yml") and path.is_file() \
            else [value]
        for part in parts:
            expanded += ["--config", part]
    return expanded


def run(argv: list[str]) -> None:
    """LightningCLI over ``DADAModule`` and the DataModules, with a forced ``last`` checkpoint."""
    from jsonargparse import ArgumentError
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from lightning.pytorch.cli import LightningCLI

    from node_dada.data.datamodules import GuidedDepthDataModule
    from node_dada.models.checkpointing import LastCheckpoint, make_resumable
    from node_dada.models.dada_module import DADAModule

    class NodeDadaCLI(LightningCLI):
        def parse_arguments(self, parser, args) -> None:  # noqa: ANN001
            with warnings.catch_warnings():
                # ``args`` is always this command's own argument list, also from a
                # shell or inside a sweep: Lightning's warning about sys.argv is moot
                warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
                super().parse_arguments(parser, args)
            subcommand = self.config.get("subcommand")
            if subcommand:
                config = self.config[subcommand]
                if "ckpt_path" in config:
                    asked = config.get("ckpt_path")
                    config["ckpt_path"] = _newest_checkpoint(
                        asked, config.get("checkpoint.dirpath"), config,
                        required=subcommand != "fit")
                    if subcommand == "fit" and str(asked) == "last" and \
                            str(config["ckpt_path"]) != "last" and \
                            not config.get("checkpoint.dirpath"):
                        _continue_version(config, config["ckpt_path"])
                _check_ckpt_path(config.get("ckpt_path"))

        def instantiate_trainer(self, **kwargs):  # noqa: ANN003, ANN202
            # Atomic checkpoint writes and random states that survive a kill.
            return make_resumable(super().instantiate_trainer(**kwargs))

        def add_arguments_to_parser(self, parser) -> None:  # noqa: ANN001
            # Always keep `last.ckpt`, current to the last finished epoch, so that
            # `--ckpt_path last` resumes any run where it stopped.
            parser.add_lightning_class_args(LastCheckpoint, "checkpoint")
            parser.set_defaults({"checkpoint.save_last": True})
            # One value for the guide's channel count: the data converts guides to what
            # the model's extractor takes (grayscale, RGB, multispectral, ...).
            parser.link_arguments("model.guide_channels", "data.init_args.guide_channels")

    try:
        NodeDadaCLI(
            DADAModule,
            GuidedDepthDataModule,
            subclass_mode_data=True,
            seed_everything_default=0,
            save_config_kwargs={"overwrite": True},
            # Parse errors raise instead of printing the whole usage: main() reports one line.
            parser_kwargs={"exit_on_error": False},
            args=expand_configs(argv),
        )
    except (ArgumentError, MisconfigurationException) as error:
        raise ConfigError(str(error)) from None
