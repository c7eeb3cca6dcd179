"""The transfer attack: L-infinity PGD crafted on the ANN teacher of `teacher.*`, once, and cached.

A black-box figure that needs no gradient of the network attacked: the adversarial test images
are crafted on the ANN teacher (PGD, its options those of `pgd`: `steps`, `step_size`,
`random_start`, `seed`) and then evaluated on each method's network. They are crafted once per
(teacher, options, eps, test split) and kept beside the teacher in its cache
(`<teacher cache>/<teacher key>/adversarial/transfer-<key>.pt`), the key a hash of the teacher's
cache key, the attack's name and options, eps and the test split's digest; written whole (a
temporary file renamed), under a lock so that concurrent trials craft it once, and read back
with `torch.load(..., weights_only=True)`. Every method and seed that shares the teacher (with
`teacher.seed` fixed, as in search_spaces/kd.yaml: all of them) sees identical images. A method
that does not distil gets the teacher through the cache too (trained there first if it is not:
a sweep trains it up front, `harness.methods.base.uses_teacher`).

For a KD student the teacher is the network it imitated, so its transfer figure is grey-box
rather than black-box; for the others it is a plain transfer from another architecture.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from harness.attacks import AttackTarget, TeacherSource
from harness.attacks.gradient import PGDAttack, PGDConfig, run_pgd
from harness.data.stream import batches_of
from harness.files import DamagedState, write_atomically

CACHE_FORMAT = 1
CACHE_FOLDER = "adversarial"  # beside the teacher's teacher.pt


def transfer_key(source_key: str, name: str, options: PGDConfig, eps: float, test_digest: str) -> str:
    """The content address of one set of transfer images."""
    identity = {
        "format": CACHE_FORMAT,
        "teacher": source_key,
        "attack": name,
        "options": {k: v for k, v in options.model_dump(mode="json").items() if k != "eps"},
        "eps": float(eps),
        "test": test_digest,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]


def transfer_path(source: TeacherSource, name: str, options: PGDConfig, eps: float, test_digest: str) -> Path:
    """Where the transfer images of (teacher, options, eps, test split) are cached."""
    return source.folder / CACHE_FOLDER / f"{name}-{transfer_key(source.key, name, options, eps, test_digest)}.pt"


class TransferConfig(PGDConfig):
    """`eval.attacks.transfer.*`: the PGD options (`steps`, `step_size`, `random_start`, `seed`)
    of the images crafted on the teacher."""


class TransferAttack(PGDAttack):
    """`transfer`: PGD on the ANN teacher, crafted once per (teacher, options, eps, test split)
    and cached; each method's network is evaluated on the same images."""

    options = TransferConfig
    needs_teacher = True

    def batches(self, target: AttackTarget, x: Any, y: Tensor, eps: float) -> Iterator[tuple[Tensor, Tensor]]:
        adversarial = self.crafted(target, x, y, eps)
        order = list(torch.arange(len(x)).split(target.batch_size))
        for index in order:
            yield index, adversarial[index].to(y.device)

    def perturb(self, target: AttackTarget, images: Tensor, labels: Tensor, eps: float, indices: Tensor) -> Tensor:
        source = target.teacher()
        return run_pgd(self.name, self.config, source.gradient, source.logits, images, labels, eps, indices)

    def crafted(self, target: AttackTarget, x: Any, y: Tensor, eps: float) -> Tensor:
        """The adversarial test split `[N, C, H, W]` (CPU, float32), from the cache or crafted
        on the teacher and cached."""
        source = target.teacher()
        path = transfer_path(source, self.name, self.config, eps, target.test_digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_name(path.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if path.exists():
                target.log(f"transfer images (eps {eps:g}) from cache {path}")
                return self._read(path, len(x))
            target.log(f"crafting transfer images (eps {eps:g}) on teacher {source.key}; cached at {path}")
            order = list(torch.arange(len(x)).split(target.batch_size))
            parts = []
            for index, images in zip(order, batches_of(x, order), strict=True):
                labels = y[index.to(y.device)]
                crafted = run_pgd(self.name, self.config, source.gradient, source.logits, images, labels, eps, index)
                parts.append(crafted.detach().float().cpu())
            adversarial = torch.cat(parts) if parts else torch.empty(0)
            saved = {"images": adversarial, "teacher": source.key, "eps": float(eps)}
            write_atomically(path, lambda scratch: torch.save(saved, scratch))
            return adversarial

    @staticmethod
    def _read(path: Path, n: int) -> Tensor:
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            images = saved["images"]
            if not isinstance(images, Tensor) or len(images) != n:
                raise ValueError(f"{n} images expected")
        except Exception as exc:  # noqa: BLE001 - unreadable for any reason: say which file
            raise DamagedState(
                f"{path}: the cached transfer images are damaged ({type(exc).__name__}); remove that file to craft "
                "them again"
            ) from None
        return images
