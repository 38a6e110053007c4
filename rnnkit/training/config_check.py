"""Check a composed config against the signatures of what it instantiates, before any work is done.

Every node with a ``_target_`` is checked: each key must be a parameter of the target (unless it
takes ``**kwargs``), and values given for parameters annotated ``int``, ``float``, ``bool`` or
``str`` (optionally ``| None``) must have that type. A ``rnnkit.nn.Recurrent`` node's extra keys are
checked against its cell's constructor. Errors name the full key, e.g. ``model.encoder.hiden_size``.
"""

from __future__ import annotations

import difflib
import inspect
import types
import typing
from typing import Any

from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig, OmegaConf

from rnnkit.cells.registry import get_cell
from rnnkit.nn.recurrent import REGULARIZERS, Recurrent


class ConfigError(ValueError):
    """A config key or value that the target it configures cannot accept."""


_SIMPLE = {int, float, bool, str}


def check_config(cfg: DictConfig, skip: tuple[str, ...] = ("hydra",)) -> None:
    """Raise :class:`ConfigError` naming the first bad key found (all problems are listed)."""
    problems: list[str] = []
    for key in cfg:
        if key in skip:
            continue
        node = (
            cfg[key] if not OmegaConf.is_config(cfg[key]) else OmegaConf.to_container(cfg[key], resolve=True)
        )
        _walk(node, str(key), problems, skip)
    if problems:
        raise ConfigError("Invalid config:\n  " + "\n  ".join(problems))


def _walk(node: Any, path: str, problems: list[str], skip: tuple[str, ...]) -> None:
    if isinstance(node, dict):
        if "_target_" in node:
            _check_target(node, path, problems)
        for key, value in node.items():
            _walk(value, f"{path}.{key}", problems, skip)
    elif isinstance(node, list | ListConfig):
        for i, value in enumerate(node):
            _walk(value, f"{path}[{i}]", problems, skip)


def check_node(node: dict, path: str) -> list[str]:
    """The problems of one instantiated node (a dict with ``_target_``) found at ``path``."""
    problems: list[str] = []
    _check_target(node, path, problems)
    return problems


def _check_target(node: dict, path: str, problems: list[str]) -> None:
    where = path or "<root>"
    try:
        target = get_object(node["_target_"])
    except Exception as err:  # noqa: BLE001 - report any import failure as a config problem
        problems.append(f"{where}._target_: cannot import '{node['_target_']}' ({err})")
        return
    params, accepts_any, hints = _signature(target)
    keys = {k: v for k, v in node.items() if not k.startswith("_")}
    if accepts_any:
        extra_target = _kwargs_target(target, node, path, problems)
        if extra_target is not None:
            cell_params, cell_any, cell_hints = _signature(extra_target)
            if not cell_any:  # the layer applies the regularizers itself when the cell does not take them
                extra = {
                    k: v
                    for k, v in keys.items()
                    if k not in params and (k in cell_params or k not in REGULARIZERS)
                }
                _check_keys(extra, cell_params, cell_hints, path, extra_target, problems)
            keys = {k: v for k, v in keys.items() if k in params}
        else:
            keys = {k: v for k, v in keys.items() if k in params}
    _check_keys(keys, params, hints, path, target, problems)


def _check_keys(keys, params, hints, path, target, problems) -> None:
    name = getattr(target, "__qualname__", repr(target))
    for key, value in keys.items():
        full = f"{path}.{key}" if path else key
        if key not in params:
            close = difflib.get_close_matches(key, list(params), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            problems.append(f"{full}: '{key}' is not an argument of {name}{hint}")
            continue
        expected = hints.get(key)
        if (
            expected is not None
            and value is not None
            and not isinstance(value, dict)
            and not _type_ok(value, expected)
        ):
            problems.append(f"{full}: expected {_type_name(expected)}, got {type(value).__name__} {value!r}")


def _signature(target: Any) -> tuple[dict[str, inspect.Parameter], bool, dict[str, Any]]:
    func = target.__init__ if inspect.isclass(target) else target
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return {}, True, {}
    params = {k: p for k, p in sig.parameters.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    try:
        hints = typing.get_type_hints(func)
    except Exception:  # noqa: BLE001 - unresolvable annotations: skip type checks
        hints = {}
    return params, accepts_any, hints


def _kwargs_target(target: Any, node: dict, path: str, problems: list[str]) -> Any | None:
    """Where a node's extra keys go: a Recurrent's go to its cell's constructor."""
    if inspect.isclass(target) and issubclass(target, Recurrent) and isinstance(node.get("cell"), str):
        try:
            return get_cell(node["cell"])
        except KeyError as err:
            problems.append(f"{path}.cell: {err.args[0]} (a cell of your own: list its module in `imports`)")
    return None


def _type_ok(value: Any, expected: Any) -> bool:
    allowed = _allowed_types(expected)
    if allowed is None:
        return True
    if isinstance(value, bool):
        return bool in allowed
    if isinstance(value, int) and (int in allowed or float in allowed):
        return True
    return any(isinstance(value, t) for t in allowed if t is not int)


def _allowed_types(expected: Any) -> set[type] | None:
    """The simple types an annotation admits, or None when it is not a simple one (not checked)."""
    if expected in _SIMPLE:
        return {expected}
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(expected) if a is not type(None)]
        if args and all(a in _SIMPLE for a in args):
            return set(args)
    return None


def _type_name(expected: Any) -> str:
    allowed = _allowed_types(expected)
    return " or ".join(sorted(t.__name__ for t in allowed)) if allowed else str(expected)
