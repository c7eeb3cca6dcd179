"""The model-family contract: `ModelArgs`, and `MODELS`, the families registered by name.

A model family is a `ModelArgs` subclass registered under the entry-point group
`snn_kd_harness.models`; the entry point's name is the `arch` users write (`student.arch:
resnet`). The family validates its own arguments (its fields) and builds its network (`build`),
as timm's `create_model` does: `student.*` and `teacher.*` hold one family's arguments beside
`arch`, and nothing else in the harness knows what they are.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import field_validator

from harness.config.base import Section
from harness.registry import GROUP_PREFIX, Registry

if TYPE_CHECKING:
    from torch import nn

ImageShape = tuple[int, int]
"""An image's (height, width) in pixels: what every family is built for (images need not be square)."""


class ModelArgs(Section):
    """A model family: its own arguments (beside `arch`) and how to build it.

    Subclass it once per family and register the subclass under the entry-point group
    `snn_kd_harness.models`; the entry point's name is the `arch` users write. Declare the
    family's knobs as fields with defaults and validators (depth and width for a CNN; an
    embedding dimension, heads and a patch size for a transformer), and implement `build`.
    """

    arch: str

    ann_only: ClassVar[bool] = False
    """True for a family that builds ANNs only (torchvision's models): a teacher, never a student."""

    @field_validator("arch")
    @classmethod
    def _arch(cls, arch: str) -> str:
        return cls.check_arch(arch)

    @classmethod
    def check_arch(cls, arch: str) -> str:
        """Validates the `arch` naming this family. `<family>/<variant>` names a variant of a
        family that has them (`torchvision/resnet18`); a family without variants takes its bare name."""
        if "/" in arch:
            raise ValueError(f"{arch.partition('/')[0]} has no variants; write arch: {arch.partition('/')[0]}")
        return arch

    @classmethod
    def import_state_dict(cls, state: dict[str, Any]) -> dict[str, Any]:
        """A checkpoint's state dict in this family's network's keys (`teacher.checkpoint`); a
        family whose published weights use other keys maps them here. Default: as it is."""
        return state

    def build(
        self,
        *,
        in_channels: int,
        num_classes: int,
        image_shape: ImageShape,
        activation: Callable[[], nn.Module],
        pool: str = "max",
    ) -> nn.Module:
        """A network of this family (a `harness.models.SpikingNetwork`) for `in_channels` x
        `image_shape` = (height, width) inputs, which need not be square, with `activation()` as
        every neuron (ReLU: an ANN; LIF: a spiking network). `pool` is "max" or "avg"
        (conversion asks for average pooling).

        A family that cannot take a shape raises ValueError (or HarnessInputError) saying why;
        the harness reports it as bad input, naming the family and the shape, before training.
        """
        raise NotImplementedError

    def arguments(self) -> dict[str, Any]:
        """The family's own arguments (everything but `arch`), as JSON values: what names this
        network in a cache key or a log line."""
        return self.model_dump(mode="json", exclude={"arch"})


def family_name(arch: str) -> str:
    """The registered family an `arch` names: `torchvision` for `torchvision/resnet18`."""
    return arch.partition("/")[0]


def model_family(arch: str) -> type[ModelArgs]:
    """The family class `arch` names (a variant's family for `<family>/<variant>`).

    Raises:
        HarnessInputError: no such family; PluginError: it does not load.
    """
    return MODELS.get(family_name(arch))


def check_model_family(name: str, entry: Any) -> None:
    """`MODELS`' check: a `ModelArgs` subclass with `build` and a default for every argument."""
    if not (isinstance(entry, type) and issubclass(entry, ModelArgs)):
        raise TypeError(f"expected a subclass of harness.models.ModelArgs, got {entry!r}")
    if entry.build is ModelArgs.build:
        raise TypeError(f"{entry.__name__} does not implement build()")
    parameters = inspect.signature(entry.build).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    if "image_shape" not in parameters and not takes_any:
        # Families written for square images took `image_size: int`; say so rather than fail later.
        raise TypeError(f"{entry.__name__}.build() must take image_shape, the images' (height, width)")
    required = [field for field, info in entry.model_fields.items() if field != "arch" and info.is_required()]
    if required:
        raise ValueError(f"every argument needs a default ({required[0]!r} has none)")


MODELS: Registry[type[ModelArgs]] = Registry(GROUP_PREFIX + "models", "model family", check_model_family)
