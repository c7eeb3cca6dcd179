"""`harness keys`: every dotted key a space file's `fixed:` / `space:` or `--set` accepts.

The rows come from the schemas themselves: the core sections (`harness.config.sections`), each
model family's arguments under `student.*` / `teacher.*` (one row per family), each method's own
section (a plugin's too) and the space file's `search.*` and `resources.*`, each with its type
(with bounds), default and owner (`harness`, `model resnet: snn-kd-harness`, ...).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel

from harness.config.base import key_of
from harness.config.dotted import DICT_LEAVES
from harness.config.sections import OPTIONS_FIELD, STUDENT_DEFAULTS, TEACHER_DEFAULTS, TeacherConfig, TrialConfig
from harness.config.space import SpaceFile, changes_the_plan
from harness.data import DATASETS
from harness.errors import PluginError
from harness.methods.base import METHODS
from harness.models import ENCODERS, MODELS
from harness.registry import Registry

KeyRow = tuple[str, str, str, str, bool]
"""(dotted key, type, default, owner, whether a resume with another value is another plan), as
`harness keys` prints them."""
_Row = tuple[str, str, str, str]

_NAMED_BY_REGISTRY: dict[str, Registry[Any]] = {
    "method": METHODS,
    "dataset.name": DATASETS,
    "teacher.arch": MODELS,
    "student.arch": MODELS,
    "encoding.name": ENCODERS,
}


def key_table() -> tuple[list[KeyRow], list[str]]:
    """Every dotted key a space file's `fixed:` / `space:` or `--set` accepts, then the space
    file's own `search.*` and `resources.*`: the core sections, each model family's arguments
    under `student.*` / `teacher.*` (one row per family), each method's own section; each with
    whether another value on `--resume` is another plan (`changes_the_plan`).

    Returns:
        The rows, and one line per plugin that does not load (its keys are missing).
    """
    rows: list[_Row] = []
    broken: list[str] = []
    for name, field in TrialConfig.model_fields.items():
        if name == OPTIONS_FIELD:  # the method's own section: its rows come below, under its name
            continue
        if name in ("student", "teacher"):
            defaults = STUDENT_DEFAULTS if name == "student" else TEACHER_DEFAULTS
            rows.append((f"{name}.arch", _type_of(f"{name}.arch", str), _show(defaults["arch"]), "harness"))
            if name == "teacher":
                rows += _section_rows(TeacherConfig, "teacher.", "harness", skip={"model"})
            for family in MODELS.names():
                try:
                    args = MODELS.get(family)
                except PluginError as exc:
                    broken.append(str(exc))
                    continue
                given = {k: v for k, v in defaults.items() if k != "arch"} if family == defaults["arch"] else {}
                skip = {"arch", *TeacherConfig.training_keys()} if name == "teacher" else {"arch"}
                rows += _section_rows(args, f"{name}.", _owner(MODELS, "model", family), given, skip)
        else:
            rows += _field_rows(name, field, "harness")
    for method in METHODS.names():
        try:
            options = METHODS.get(method).options
        except PluginError as exc:
            broken.append(str(exc))
            continue
        if options is not None:
            rows += _section_rows(options, f"{method}.", _owner(METHODS, "method", method))
    for name in ("name", "methods", "search", "resources"):
        rows += _field_rows(name, SpaceFile.model_fields[name], "space file")
    return [(*row[:4], changes_the_plan(row[0])) for row in rows], broken


def _owner(registry: Registry[Any], kind: str, name: str) -> str:
    providers = registry.providers(name)
    return f"{kind} {name}: {providers[0].distribution}" if providers else f"{kind} {name}"


def _section_rows(
    model: type[BaseModel], prefix: str, owner: str, defaults: Mapping[str, Any] | None = None, skip: Iterable[str] = ()
) -> list[_Row]:
    rows: list[_Row] = []
    for name, field in model.model_fields.items():
        if name not in set(skip):  # listed by its key: an aliased field (`bkd.lambda`) by its alias
            rows += _field_rows(prefix + key_of(name, field), field, owner, (defaults or {}).get(name, _NO_DEFAULT))
    return rows


_NO_DEFAULT = object()


def _field_rows(key: str, field: Any, owner: str, default: Any = _NO_DEFAULT) -> list[_Row]:
    annotation = field.annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel) and key not in DICT_LEAVES:
        return _section_rows(annotation, key + ".", owner)
    if default is _NO_DEFAULT:
        default = "(required)" if field.is_required() else _show(field.get_default(call_default_factory=True))
    else:
        default = _show(default)
    return [(key, _type_of(key, annotation, field.metadata), default, owner)]


def _type_of(key: str, annotation: Any, metadata: Iterable[Any] = ()) -> str:
    """`int >= 1`, `float (0, 0.5]`, `hard|soft`, `list[int [1, 1024]]`, `float > 0 or null`."""
    import types
    import typing

    if key in _NAMED_BY_REGISTRY:
        return "|".join(_NAMED_BY_REGISTRY[key].names()) or "str"
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        inner_metadata = [m for arg in args[1:] for m in getattr(arg, "metadata", [arg])]
        return _type_of("", args[0], [*inner_metadata, *metadata])
    if annotation is type(None):
        text = "null"
    elif origin is Literal:
        text = "|".join(str(arg) for arg in args)
    elif origin in (typing.Union, types.UnionType):
        text = " or ".join(_type_of("", arg) for arg in args)
    elif origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        text = f"list[{_type_of('', args[0])}]"
    elif origin is tuple:
        text = "[" + ", ".join(_type_of("", arg) for arg in args) + "]"
    elif origin is dict:
        text = f"dict[{_type_of('', args[0])}, {_type_of('', args[1])}]"
    elif annotation is Any:
        text = "any"
    elif isinstance(annotation, type):
        text = annotation.__name__
    else:
        text = str(annotation)
    return text + _bounds(metadata)


def _bounds(metadata: Iterable[Any]) -> str:
    low = high = None
    for item in metadata:
        for attribute, bracket in (("ge", "["), ("gt", "(")):
            if getattr(item, attribute, None) is not None:
                low = (bracket, getattr(item, attribute))
        for attribute, bracket in (("le", "]"), ("lt", ")")):
            if getattr(item, attribute, None) is not None:
                high = (bracket, getattr(item, attribute))
    if low and high:
        return f" {low[0]}{low[1]}, {high[1]}{high[0]}"
    if low:
        return f" {'>=' if low[0] == '[' else '>'} {low[1]}"
    if high:
        return f" {'<=' if high[0] == ']' else '<'} {high[1]}"
    return ""


def _show(value: Any) -> str:
    """A default as one would write it in YAML."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return value or "''"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_show(item) for item in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{key}: {_show(item)}" for key, item in value.items()) + "}"
    return str(value)
