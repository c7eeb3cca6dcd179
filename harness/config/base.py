"""The base of every config section, and the few helpers validators share.

A `Section` is a small frozen pydantic model that rejects unknown keys, wrong types and
non-finite numbers at load; every key has a default, so a section may be left out of a file.
The harness's core sections (`harness.config.sections`), a method's own section
(`Method.options`), a dataset's settings (`harness.data.DatasetConfig`) and a model family's
arguments (`harness.models.ModelArgs`) all subclass it.

This module imports nothing of the harness but its errors and the generic `Registry`, so every
package can build on it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import InitErrorDetails

from harness.errors import HarnessInputError
from harness.registry import Registry

PositiveInt = Annotated[int, Field(ge=1)]
PositiveFloat = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
TimeSteps = Annotated[int, Field(ge=1, le=1024)]

KnownKeys = Callable[[tuple[Any, ...]], list[str]]
"""(the location of a section) -> the keys it accepts, for an "unknown key" message."""


class Section(BaseModel):
    """Base of every config section: frozen, unknown keys and non-finite numbers rejected.

    Subclass it for a method's own section (`Method.options`) or a model family's arguments
    (`harness.models.ModelArgs`); every key needs a default, so a section may be left out.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False, allow_inf_nan=False)

    @model_validator(mode="after")
    def _finite_values(self) -> Section:
        # `allow_inf_nan=False` covers fields typed `float`; this covers every other way a float
        # gets in (fields typed `Any`, `dict[str, Any]`, a categorical's choices, a plugin's
        # section that allows inf/nan for its own fields).
        for name, field in type(self).model_fields.items():
            found = _non_finite(getattr(self, name), (key_of(name, field),))
            if found is not None:
                raise error_at(found[0], found[1], "finite_number")
        return self


def _non_finite(value: Any, path: tuple[str | int, ...]) -> tuple[tuple[str | int, ...], float] | None:
    """The first non-finite float in `value` (mappings, sequences, non-Section models) and its path."""
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, value)
    if isinstance(value, Section):  # it checked itself when it was made
        return None
    if isinstance(value, BaseModel):
        items: Iterable[tuple[Any, Any]] = ((name, getattr(value, name)) for name in type(value).model_fields)
    elif isinstance(value, Mapping):
        items = value.items()
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _non_finite(item, (*path, key if isinstance(key, (str, int)) else str(key)))
        if found is not None:
            return found
    return None


def error_at(loc: tuple[str | int, ...], value: Any, kind: str = "value_error", message: str = "") -> ValidationError:
    """A ValidationError at `loc` (relative to the model being validated), to raise from a
    validator: pydantic prefixes the location of the field or model it validates."""
    detail: InitErrorDetails = {"type": kind, "loc": loc, "input": value}
    if kind == "value_error":
        detail["ctx"] = {"error": ValueError(message)}
    return ValidationError.from_exception_data("config", [detail])


def located(error: ValidationError, prefix: tuple[str | int, ...]) -> ValidationError:
    """`error` with `prefix` put before every location (a section validated on its own, whose
    errors must name its place in the trial config: `kd.alpha`, not `alpha`)."""
    details: list[InitErrorDetails] = []
    for line in error.errors():
        detail: InitErrorDetails = {"type": line["type"], "loc": (*prefix, *line["loc"]), "input": line.get("input")}
        if "ctx" in line:
            detail["ctx"] = line["ctx"]
        details.append(detail)
    return ValidationError.from_exception_data(error.title, details)


def registered(registry: Registry[Any], name: str) -> str:
    """Checks `name` is registered and loads; a ValueError lets pydantic name the offending key."""
    try:
        registry.get(name)
    except HarnessInputError as exc:
        raise ValueError(str(exc)) from None
    return name


def describe_error(error: Mapping[str, Any], known_keys: KnownKeys | None = None) -> tuple[str, str]:
    """One pydantic error as (dotted key, what was expected); `known_keys` lists what an
    unknown key's section accepts."""
    loc = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        keys = known_keys(tuple(error["loc"][:-1])) if known_keys is not None else []
        return loc, f"unknown key; expected one of: {', '.join(keys)}" if keys else "unknown key"
    if error["type"] == "value_error":  # our validators' messages already name the value
        return loc, error["msg"].removeprefix("Value error, ")
    return loc, f"{error['msg']} (got {error.get('input')!r})"


def key_of(name: str, field: FieldInfo) -> str:
    """The key a file, `--set` and a dump use for field `name`: its alias where it has one (a
    Python keyword such as `bkd.lambda` is the field `lambda_` with the alias `lambda`)."""
    return field.alias or name


def keys_of(model: type[BaseModel]) -> dict[str, FieldInfo]:
    """A model's fields by the keys a file gives them (`key_of`)."""
    return {key_of(name, field): field for name, field in model.model_fields.items()}


def fields_of(model: type[BaseModel]) -> KnownKeys:
    """`KnownKeys` of one model: its fields at the top, its nested sections' fields below (by
    their keys: an aliased field by its alias)."""

    def known(parents: tuple[Any, ...]) -> list[str]:
        current: Any = model
        for part in parents:
            field = keys_of(current).get(part) if isinstance(part, str) else None
            current = field.annotation if field is not None else None
            if not (isinstance(current, type) and issubclass(current, BaseModel)):
                return []
        return sorted(keys_of(current))

    return known
