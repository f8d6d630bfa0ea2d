"""Click options derived from pydantic fields: the flag, type, default and help of an option come from the
field it sets, so a setting is described once (in its model) and a new field needs no option written for it.

Two kinds of option:

- ``overrides=True`` (``seispick serve``, ``seispick config``): the option overrides a pydantic-settings field.
  Its default is None (not given: the variable or the field's default applies), its help names the variable and
  the default, and its value is checked by the settings model, whose errors name the flag.
- ``overrides=False`` (``seispick associate``): the option stands alone. Its default is the field's, and the
  field's bounds and choices are checked by click (``IntRange``, ``FloatRange``, ``Choice``).
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
import click
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

FieldPath = tuple[str, ...]
Decorator = Callable[[Callable], Callable]


@dataclass(frozen=True)
class FieldOption:
    """The option of the field at ``path`` (names of nested fields); ``flag`` defaults to ``--field-name``,
    ``dest`` to the field's name, ``help`` to its description (``{description}`` in ``help`` stands for it);
    ``attrs`` are further ``click.option`` arguments (they win over the derived ones)."""

    path: FieldPath
    flag: str | None = None
    dest: str | None = None
    help: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def option_flag(self) -> str:
        return self.flag or "--" + self.path[-1].replace("_", "-")

    @property
    def name(self) -> str:
        """The parameter name the command receives."""
        return self.dest or self.path[-1]


def model_field(model: type[BaseModel], path: FieldPath) -> FieldInfo:
    """The field at ``path``, through nested models (``("streaming", "workers")``)."""
    info = model.model_fields[path[0]]
    for part in path[1:]:
        info = _model_of(info.annotation).model_fields[part]
    return info


def env_name(model: type[BaseModel], path: FieldPath) -> str | None:
    """The environment variable of a pydantic-settings field (None for a plain model)."""
    prefix = model.model_config.get("env_prefix")
    if prefix is None:
        return None
    delimiter = model.model_config.get("env_nested_delimiter") or "__"
    return prefix + delimiter.join(part.upper() for part in path)


def field_option(model: type[BaseModel], spec: FieldOption, overrides: bool) -> Decorator:
    """The ``click.option`` of ``spec``'s field of ``model`` (see the module docstring for ``overrides``)."""
    info = model_field(model, spec.path)
    annotation, multiple = _item_type(info.annotation)
    attrs: dict[str, Any] = {"help": _help(model, spec, info, overrides)}
    default = _default(info)
    if annotation is bool:
        attrs |= {"is_flag": True, "default": None if overrides else bool(default)}
    elif multiple:
        attrs |= {"multiple": True, "type": _click_type(annotation, [], False)}
    else:
        attrs["type"] = _click_type(annotation, info.metadata, not overrides)
        attrs["default"] = None if overrides else default
        attrs["show_default"] = not overrides and default is not None
    flag = spec.option_flag
    if annotation is bool and "/" not in flag:  # on and off from the command line, whatever the default
        flag = f"{flag}/--no-{flag.removeprefix('--')}"
    return click.option(flag, spec.name, **(attrs | spec.attrs))


def field_options(model: type[BaseModel], specs: Iterable[FieldOption], overrides: bool) -> Decorator:
    """Every option of ``specs``, listed in ``--help`` in their order."""
    decorators = [field_option(model, spec, overrides) for spec in specs]

    def apply(command: Callable) -> Callable:
        for decorator in reversed(decorators):
            command = decorator(command)
        return command

    return apply


def _model_of(annotation: Any) -> type[BaseModel]:
    for candidate in (annotation, *get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    raise TypeError(f"{annotation!r} is not a model")


def _item_type(annotation: Any) -> tuple[Any, bool]:
    """The value type without ``None``/``Annotated``, and whether it is a list (a repeatable option)."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            others = [arg for arg in get_args(annotation) if arg is not type(None)]
            annotation = others[0] if len(others) == 1 else str
        elif origin in (list, tuple, set):
            return _item_type(get_args(annotation)[0])[0], True
        else:
            return annotation, False


def _click_type(annotation: Any, metadata: list[Any], checked: bool) -> click.ParamType:
    """Numbers, paths and (with ``checked``) bounds and choices; other values as text for pydantic to read."""
    if annotation in (int, float):
        if not checked:
            return click.INT if annotation is int else click.FLOAT
        bounds: dict[str, Any] = {}
        for item in metadata:
            if isinstance(item, annotated_types.Ge | annotated_types.Gt):
                bounds |= {"min": getattr(item, "ge", getattr(item, "gt", None)),
                           "min_open": isinstance(item, annotated_types.Gt)}  # fmt: skip
            if isinstance(item, annotated_types.Le | annotated_types.Lt):
                bounds |= {"max": getattr(item, "le", getattr(item, "lt", None)),
                           "max_open": isinstance(item, annotated_types.Lt)}  # fmt: skip
        if annotation is int:
            return click.IntRange(**bounds) if bounds else click.INT
        return click.FloatRange(**bounds) if bounds else click.FLOAT
    if isinstance(annotation, type) and issubclass(annotation, Path):
        return click.Path(path_type=Path)
    if checked and get_origin(annotation) is Literal:
        return click.Choice([str(choice) for choice in get_args(annotation)])
    return (
        click.STRING
    )  # text for pydantic to read (times as ISO 8601 with a zone, which click.DateTime lacks)


def _default(info: FieldInfo) -> Any:
    if info.default_factory is not None:
        return None
    return None if info.default is PydanticUndefined else info.default


def _help(model: type[BaseModel], spec: FieldOption, info: FieldInfo, overrides: bool) -> str:
    description = info.description or spec.path[-1].replace("_", " ")
    template = spec.help or "{description}"
    if not template.startswith("{description}"):  # within a sentence: "With --follow: pick times..."
        description = description[:1].lower() + description[1:]
    text = template.replace("{description}", description).rstrip(".")
    if not overrides:
        return text + "."
    notes = [name] if (name := env_name(model, spec.path)) else []
    default = _default(info)
    if default is not None and default is not False and default != "":
        notes.append(f"default {default}")
    return f"{text} ({'; '.join(notes)})." if notes else text + "."
