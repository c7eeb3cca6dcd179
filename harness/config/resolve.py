"""Fixed values, sampled values and `--set` into one validated `TrialConfig`, knowing where each key came from.

`resolve` merges a space file's `fixed` values, its `eval` block, the chosen method and
`--set key=value` overrides into one tree and validates it once (`build_trial_config`): the core
sections by `TrialConfig`, the method's own section by the method (`Method.validate_options`),
the families' arguments by the families. Every defect becomes a one-line `HarnessInputError`
naming where the offending key was given: `--set KEY`, `<file>: fixed.KEY`, `--method`, ...
(`Origin`, `one_line`). The result (`Resolved`) keeps those origins, so a later check (the
dataset's files, `check_dataset_files`) names the same places.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from pydantic import BaseModel, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from harness.config.base import KnownKeys, describe_error, error_at, fields_of
from harness.config.dotted import KeyClash, flatten, unflatten
from harness.config.sections import (
    DEFAULT_METHOD,
    OPTIONS_FIELD,
    STUDENT_DEFAULTS,
    TEACHER_DEFAULTS,
    TeacherConfig,
    TrialConfig,
    core_sections,
)
from harness.data import check_dataset
from harness.errors import HarnessInputError
from harness.methods.base import METHODS, NoOptions
from harness.models.args import model_family


class SpaceValues(Protocol):
    """What resolving reads of a space file (`harness.config.space.SpaceFile`)."""

    @property
    def methods(self) -> Sequence[str]: ...
    @property
    def fixed(self) -> Mapping[str, Any]: ...
    @property
    def eval(self) -> Mapping[str, Any]: ...


# -- a tree into a TrialConfig ---------------------------------------------------------------


def build_trial_config(tree: Mapping[str, Any]) -> TrialConfig:
    """Validates a nested config tree (`{"method": "kd", "kd": {"alpha": 0.5}, ...}`).

    The tree's `method` names the method, which validates its own section (the key named after
    it); a section of another registered method is checked by that method and left out. The
    first error is the first key in the config's order: the core sections, then the method's
    own section, then the others'.

    Raises:
        ValidationError: the first offending key (`one_line` words it).
        PluginError: the method's (or another named method's) plugin does not load.
    """
    tree = dict(tree)
    if OPTIONS_FIELD in tree:  # a field of TrialConfig, never a key of a file
        raise error_at((OPTIONS_FIELD,), tree[OPTIONS_FIELD], "extra_forbidden")
    method = tree.get("method", DEFAULT_METHOD)
    if not isinstance(method, str):
        return TrialConfig.model_validate(tree)  # pydantic's own "valid string" error at `method`
    if method not in METHODS:
        try:
            METHODS.get(method)
        except HarnessInputError as exc:
            raise error_at(("method",), method, message=str(exc)) from None
    entry = METHODS.get(method)
    core = core_sections()
    sections = {key: tree.pop(key) for key in list(tree) if key not in core and key in METHODS}
    own_error: ValidationError | None = None
    options = None
    try:
        options = entry.validate_options(sections.pop(method, None))
    except ValidationError as exc:
        own_error = located(exc, (method,))
    config = TrialConfig.model_validate({**tree, OPTIONS_FIELD: options})
    if own_error is not None:
        raise own_error
    for other, section in sections.items():
        try:
            METHODS.get(other).validate_options(section)
        except ValidationError as exc:
            raise located(exc, (other,)) from None
    return config


def trial_config(flat: Mapping[str, Any]) -> TrialConfig:
    """`build_trial_config` from dotted keys (`{"method": "kd", "kd.alpha": 0.5}`)."""
    return build_trial_config(unflatten(flat))


def located(error: ValidationError, prefix: tuple[str | int, ...]) -> ValidationError:
    """`error` with `prefix` before every location: a section validated on its own, whose errors
    must name its place in the trial config (`kd.alpha`, not `alpha`)."""
    details: list[InitErrorDetails] = []
    for line in error.errors(include_url=False):
        loc = (*prefix, *line["loc"])
        detail: InitErrorDetails = {"type": line["type"], "loc": loc, "input": line.get("input")}
        if "ctx" in line:
            detail["ctx"] = line["ctx"]
        try:  # a type pydantic knows, with its own context
            ValidationError.from_exception_data(error.title, [detail])
        except (KeyError, TypeError, ValueError):  # a plugin's own error type: keep its words
            detail = {"type": PydanticCustomError(line["type"], "{message}", {"message": line["msg"]}), "loc": loc}
            detail["input"] = line.get("input")
        details.append(detail)
    return ValidationError.from_exception_data(error.title, details)


def known_keys(tree: Mapping[str, Any]) -> KnownKeys:
    """The keys each section of `tree` accepts, for an "unknown key" message (a `KnownKeys`)."""

    def known(parents: tuple[Any, ...]) -> list[str]:
        if not parents:
            return sorted(core_sections() | set(METHODS.names()))
        head, rest = parents[0], parents[1:]
        model: type[BaseModel]
        try:
            if head in ("student", "teacher"):
                given = tree.get(head)
                defaults = STUDENT_DEFAULTS if head == "student" else TEACHER_DEFAULTS
                model = model_family((given if isinstance(given, Mapping) else {}).get("arch", defaults["arch"]))
                if head == "teacher" and not rest:
                    return sorted(set(model.model_fields) | TeacherConfig.training_keys())
            elif head in core_sections():
                annotation = TrialConfig.model_fields[head].annotation
                if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
                    return []
                model = annotation
            elif head in METHODS:
                model = METHODS.get(head).options or NoOptions
            else:
                return []
        except HarnessInputError:
            return []
        return fields_of(model)(rest)

    return known


# -- where each key came from ----------------------------------------------------------------


class Origin(NamedTuple):
    """Where a dotted key of a resolved config was given.

    Attributes:
        label: What a message names: `<file>: fixed.train.lr`, `--set train.lr`, `--method`.
        nested: Whether a deeper key may be appended to `label` (`<file>: fixed.train` + `.lr`);
            false for what the user typed as one flag (`--set eval.noise` stays as typed).
    """

    label: str
    nested: bool = True


def config_origins(
    space: SpaceValues,
    *,
    method: str | None = None,
    overrides: Iterable[tuple[str, Any]] = (),
    source: str = "space file",
) -> dict[str, Origin]:
    """Where each dotted key `resolve` merges comes from (the same arguments): the file's `fixed`
    and `eval` blocks, `--method` and `--set`, the later winning."""
    origin = {key: Origin(f"{source}: fixed.{key}") for key in space.fixed}
    origin.update((key, Origin(f"{source}: {key}")) for key in flatten(space.eval, "eval."))
    origin["method"] = Origin("--method", nested=False) if method else Origin(f"{source}: methods")
    origin.update((key, Origin(f"--set {key}", nested=False)) for key, _ in overrides)
    return origin


def origin_label(origin: Mapping[str, Origin], dotted: str, default: str) -> str:
    """What a message about `dotted` names: the most specific given key at or above it
    (`--set train.lr` for `train.lr`; `<file>: fixed.train.lr` for a `fixed: {train: {lr: ..}}`),
    or `default` (`<file>: <dotted>`, say) when the value is a default."""
    given = _given_at(origin, dotted)
    if given is None:
        return default
    found = origin[given]
    return found.label + (dotted[len(given) :] if found.nested and len(given) < len(dotted) else "")


def _given_at(origin: Mapping[str, Origin], dotted: str) -> str | None:
    """The longest key of `origin` that is `dotted` or a section above it; else a key below it
    (`--set train.lr.x=5` made `train.lr` a mapping), a flag before the file."""
    matches = [key for key in origin if dotted == key or dotted.startswith(key + ".")]
    if matches:
        return max(matches, key=len)
    below = sorted((key for key in origin if key.startswith(dotted + ".")), key=lambda key: origin[key].nested)
    return below[0] if below else None


def one_line(
    where: str,
    error: ValidationError,
    origin: Mapping[str, Origin] | None = None,
    tree: Mapping[str, Any] | None = None,
    known: KnownKeys | None = None,
) -> str:
    """The first validation error as `<where>: <dotted key>: <what was expected>`, or, with
    `origin`, as `<the source of that key>: <what was expected>`. An unknown key's message lists
    what its section accepts: `known`, by default a trial config's keys (`known_keys(tree)`)."""
    loc, message = describe_error(error.errors()[0], known or known_keys(tree or {}))
    if origin is None:
        return f"{where}: {loc}: {message}"
    label = origin_label(origin, loc, f"{where}: {loc}")
    head = loc.split(".")[0]
    arch = f"{head}.arch"
    if head in ("student", "teacher") and loc != arch and arch in origin and not origin[arch].nested:
        given = _given_at(origin, loc)
        if given is None or origin[given].nested:
            # A family chosen on the command line rejects an argument the file (or the family's
            # defaults) gives: name the flag that changed the family, and where the argument is.
            where_set = f" (given at {label})" if given is not None else ""
            return f"{origin[arch].label}: {message}{where_set}"
    return f"{label}: {message}"


# -- a space file's trial ----------------------------------------------------------------------


@dataclass(frozen=True)
class Resolved:
    """A resolved trial config and where each of its given keys came from.

    Attributes:
        config: The validated config.
        origin: Per dotted key given (by the file, `--method` or `--set`), its `Origin`.
        source: The space file's name, as messages give it.
    """

    config: TrialConfig
    origin: Mapping[str, Origin] = field(default_factory=dict)
    source: str = "space file"

    def label(self, dotted: str) -> str:
        """What a message about `dotted` names (`--set dataset.root`, `<file>: fixed.dataset.name`)."""
        return origin_label(self.origin, dotted, f"{self.source}: {dotted}")


def resolve(
    space: SpaceValues,
    *,
    method: str | None = None,
    overrides: Iterable[tuple[str, Any]] = (),
    source: str = "space file",
    labels: Mapping[str, Origin] | None = None,
) -> Resolved:
    """Merges a space's `fixed` values, `eval` block, a method and overrides into one trial.

    Args:
        space: The validated space file.
        method: The method to run; defaults to the first of `space.methods`.
        overrides: `(dotted key, value)` pairs, e.g. from `--set`; they win over `fixed`.
            `method` is not one of them: `--method` (or the file's `methods`) chooses it.
        source: The file name used in error messages.
        labels: Origins that replace those of some keys in messages (a searched value's).

    Raises:
        HarnessInputError: naming `--set <key>` or `<file>: fixed.<key>` and what was expected.
    """
    overrides = list(overrides)
    for key, _ in overrides:
        if key == "method":
            raise HarnessInputError(
                "--set method: choose the method with --method (harness train); a sweep runs each of the "
                "space file's `methods`"
            )
    flat: dict[str, Any] = dict(space.fixed)
    flat.update(flatten(space.eval, "eval."))
    flat["method"] = method or space.methods[0]
    flat.update(overrides)
    # A copy: `unflatten` merges an override such as `eval.noise.gaussian` into the mapping
    # the file gives for `eval.noise`, which must stay as the file says for the next trial.
    flat = copy.deepcopy(flat)
    origin = {**config_origins(space, method=method, overrides=overrides, source=source), **(labels or {})}
    try:
        tree = unflatten(flat)
    except KeyClash as exc:  # a key used both as a value and as a section
        raise HarnessInputError(f"{origin_label(origin, exc.key, f'{source}: {exc.key}')}: {exc.problem}") from None
    try:
        config = build_trial_config(tree)
    except ValidationError as exc:
        raise HarnessInputError(one_line(source, exc, origin, tree)) from None
    return Resolved(config, origin, source)


def resolve_trial_config(
    space: SpaceValues,
    *,
    method: str | None = None,
    overrides: Iterable[tuple[str, Any]] = (),
    source: str = "space file",
) -> TrialConfig:
    """`resolve(...).config`: the trial config alone."""
    return resolve(space, method=method, overrides=overrides, source=source).config


def check_dataset_files(resolved: Resolved) -> None:
    """`harness.data.check_dataset` for a trial's dataset; its error names where the offending key
    was given: what the command line changed (`--set dataset.root`), else the root (or the name)
    the file gives (`<file>: fixed.dataset.name`).

    Raises:
        HarnessInputError: the dataset's files are missing (and may not be downloaded).
    """
    dataset = resolved.config.dataset
    try:
        check_dataset(dataset.name, root=dataset.root, download=dataset.download)
    except HarnessInputError as exc:
        keys = ["dataset.root", "dataset.name"] if dataset.root is not None else ["dataset.name"]
        flags = [key for key in (*keys, "dataset.download") if resolved.label(key).startswith("--set ")]
        raise HarnessInputError(f"{resolved.label((flags or keys)[0])}: {exc}") from None
