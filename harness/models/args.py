"""The model-family contract: `ModelArgs`, and `MODELS`, the families registered by name.

A model family is a `ModelArgs` subclass registered under the entry-point group
`snn_kd_harness.models`; the entry point's name is the `arch` users write (`student.arch:
resnet`). The family validates its own arguments (its fields) and builds its network (`build`),
as timm's `create_model` does: `student.*` and `teacher.*` hold one family's arguments beside
`arch`, and nothing else in the harness knows what they are.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from harness.config.base import Section
from harness.registry import GROUP_PREFIX, Registry

if TYPE_CHECKING:
    from torch import nn


class ModelArgs(Section):
    """A model family: its own arguments (beside `arch`) and how to build it.

    Subclass it once per family and register the subclass under the entry-point group
    `snn_kd_harness.models`; the entry point's name is the `arch` users write. Declare the
    family's knobs as fields with defaults and validators (depth and width for a CNN; an
    embedding dimension, heads and a patch size for a transformer), and implement `build`.
    """

    arch: str

    def build(
        self,
        *,
        in_channels: int,
        num_classes: int,
        image_size: int,
        activation: Callable[[], nn.Module],
        pool: str = "max",
    ) -> nn.Module:
        """A network of this family (a `harness.models.SpikingNetwork`) for inputs of the given
        shape, with `activation()` as every neuron (ReLU: an ANN; LIF: a spiking network).
        `pool` is "max" or "avg" (conversion asks for average pooling)."""
        raise NotImplementedError

    def arguments(self) -> dict[str, Any]:
        """The family's own arguments (everything but `arch`), as JSON values: what names this
        network in a cache key or a log line."""
        return self.model_dump(mode="json", exclude={"arch"})


def check_model_family(name: str, entry: Any) -> None:
    """`MODELS`' check: a `ModelArgs` subclass with `build` and a default for every argument."""
    if not (isinstance(entry, type) and issubclass(entry, ModelArgs)):
        raise TypeError(f"expected a subclass of harness.models.ModelArgs, got {entry!r}")
    if entry.build is ModelArgs.build:
        raise TypeError(f"{entry.__name__} does not implement build()")
    try:
        entry(arch=name)
    except ValidationError as exc:
        raise ValueError(f"every argument needs a default ({exc.errors()[0]['loc']} has none)") from None


MODELS: Registry[type[ModelArgs]] = Registry(GROUP_PREFIX + "models", "model family", check_model_family)
