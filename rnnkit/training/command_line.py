"""Check a command line's overrides before Hydra runs it: a misspelt key or group stops the run with
"did you mean", with or without ``+``.

Hydra refuses ``cel=lstm`` with advice to append it (``+cel=lstm``), which it then accepts and the run
silently ignores. Here every override's key must name a config group (``cell=``), a key of the config
those groups compose, or a key under an instantiated node (``model.encoder.hiden_size``: there
:mod:`rnnkit.training.config_check` names the target's arguments). A key of one's own, new on purpose,
is marked with Hydra's force-add ``++key=value``; ``hydra.*`` and deletions (``~key``) are Hydra's.
Keys of instantiated nodes are checked against the target's arguments, as the config check does.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType
from omegaconf import DictConfig, OmegaConf

from rnnkit.training.config_check import check_node

# Hydra's own flags that take a value; with another config (name, path, dir) nothing is checked here
_FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--info", "-i", "--experimental-rerun"}
_OTHER_CONFIG = {"--config-name", "-cn", "--config-path", "-cp", "--config-dir", "-cd"}


class CommandLineError(ValueError):
    """An override whose key is in no config group and no composed config."""


def overrides_of(argv: list[str]) -> list[str] | None:
    """The ``key=value`` overrides of a command line (flags and their values left out); None when
    the command line picks another config, which this module does not check."""
    found: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        flag = arg.split("=", 1)[0]
        if flag in _OTHER_CONFIG:
            return None
        if arg.startswith("-"):
            skip = flag in _FLAGS_WITH_VALUE and "=" not in arg
            continue
        found.append(arg)
    return found


def groups_of(config_dir: Path) -> set[str]:
    """The config groups: every folder below the config folder, as ``a`` or ``a/b``."""
    return {str(p.relative_to(config_dir)) for p in config_dir.rglob("*") if p.is_dir()}


def _first_choice(override: Override) -> str:
    """A group override's option; for a sweep (``cell=rnn,lstm``), its first."""
    if override.is_sweep_override():
        first = next(iter(override.sweep_string_iterator()))
        return f"{override.get_key_element()}={first}"
    return override.input_line


def check_overrides(config_dir: str | Path, config_name: str, overrides: list[str]) -> None:
    """Raise :class:`CommandLineError` naming every override whose key exists nowhere (see the module
    docstring). Overrides Hydra cannot parse, or group options that do not exist, are left to Hydra,
    whose messages for those already list the choices."""
    config_dir = Path(config_dir).resolve()
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception:  # noqa: BLE001 - Hydra reports a malformed override better
        return
    groups = groups_of(config_dir)
    chosen = [_first_choice(o) for o in parsed if o.key_or_group in groups and o.type is not OverrideType.DEL]
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            cfg = compose(config_name, overrides=chosen)
    except Exception:  # noqa: BLE001 - a bad group option: Hydra names the available ones
        return
    problems = [
        problem
        for o in parsed
        if o.type in (OverrideType.CHANGE, OverrideType.ADD)
        and o.key_or_group not in groups
        and not o.key_or_group.startswith("hydra")
        and (problem := _problem(cfg, o, groups)) is not None
    ]
    if problems:
        raise CommandLineError("\n".join(problems))


def _keys(node: DictConfig) -> list[str]:
    """A node's keys, those whose value is missing (``???``) included (``in node`` skips them)."""
    return [str(k) for k in node]


def _problem(cfg: DictConfig, override: Override, groups: set[str]) -> str | None:
    """What is wrong with ``override``'s key in the composed ``cfg``, or None."""
    key = override.key_or_group
    parts = key.split(".")
    node = cfg
    owned = False  # below an instantiated node: a dict passed on as one argument (source_kwargs ...)
    for depth, part in enumerate(parts):
        if isinstance(node, DictConfig) and part in _keys(node):
            owned = owned or "_target_" in _keys(node)
            node = node._get_node(part)  # unresolved: interpolations need a running Hydra
            continue
        if isinstance(node, DictConfig) and "_target_" in _keys(node):
            return _argument_problem(node, parts[:depth], parts[depth:], override)
        if owned and override.type is OverrideType.ADD:
            return None  # a new entry of a dict argument: its target decides
        return _unknown(key, parts[:depth], part, node, groups if depth == 0 else set(), override)
    return None


def _argument_problem(node: DictConfig, parent: list[str], rest: list[str], override: Override) -> str | None:
    """A key set on an instantiated node: checked against its target's arguments (and a layer's
    cell's) as the config check does when the run starts, with "did you mean"."""
    if len(rest) != 1 or override.is_sweep_override():
        return None
    container = OmegaConf.to_container(node, resolve=False)  # interpolations need a running Hydra
    container[rest[0]] = override.value()
    key = ".".join([*parent, rest[0]])
    mine = [problem for problem in check_node(container, ".".join(parent)) if problem.startswith(f"{key}:")]
    if mine:
        return f"{override.input_line}: " + "; ".join(p.split(": ", 1)[1] for p in mine)
    close = difflib.get_close_matches(rest[0], _keys(node), n=1)
    if override.type is OverrideType.CHANGE and close:
        # an argument the node does not set, of a target taking **kwargs (Lightning's Trainer):
        # its node's keys are all there is to compare with
        where, suggestion = ".".join(parent), ".".join([*parent, close[0]])
        return (
            f"{override.input_line}: '{rest[0]}' is not set by {where} (did you mean '{suggestion}'?). "
            f"To pass it on as a new argument: +{override.input_line}"
        )
    return None


def _unknown(key: str, parent: list[str], part: str, node, groups: set[str], override: Override) -> str:
    where = ".".join(parent)
    known = _keys(node) if isinstance(node, DictConfig) else []
    candidates = known + sorted(g for g in groups if "/" not in g)
    close = difflib.get_close_matches(part, candidates, n=1)
    if close:
        suggestion = ".".join([*parent, close[0]])
        hint = f" (did you mean '{suggestion}'?)"
    else:
        hint = f"; the keys there: {sorted(map(str, known))}" if known else ""
    what = f"'{part}' is not a key of {where}" if where else f"'{part}' is not a config group or key"
    value = override.input_line.split("=", 1)[1] if "=" in override.input_line else ""
    return f"{override.input_line}: {what}{hint}. A key of your own, new on purpose: ++{key}={value}"


def check_command_line(config_dir: str | Path, config_name: str, argv: list[str]) -> None:
    """:func:`check_overrides` on a script's command line (``sys.argv[1:]``); exits with the problems."""
    overrides = overrides_of(argv)
    if not overrides:
        return
    try:
        check_overrides(config_dir, config_name, overrides)
    except CommandLineError as err:
        raise SystemExit(f"Error in the command line:\n{err}") from None


__all__ = ["CommandLineError", "check_command_line", "check_overrides", "overrides_of"]
