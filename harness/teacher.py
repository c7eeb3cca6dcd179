"""The ANN teacher: trained once per (dataset, teacher config, seed), then reused.

Teachers live in a content-addressed cache: the key hashes everything that determines the
trained weights (dataset and split, `teacher.*`, the optimiser settings of `train.*`, the
seed). A lock file makes concurrent trials that need the same teacher train it once; the
checkpoint is written to a temporary file and renamed, so a reader never sees half a file.

A pre-trained teacher (`teacher.checkpoint: PATH`) is a state dict of the family's network: a
mapping of names to tensors, or the harness's own cached `teacher.pt` (whose `state_dict` it
takes), read with `torch.load(..., weights_only=True)`, so nothing in the file is executed. Its
keys are checked against `teacher.*`'s network before anything runs (`check_teacher_checkpoint`)
and its shapes when the trial builds the network on the data. It is loaded into the teacher, which
then trains `teacher.epochs` epochs (0: used as it is), and cached like a trained teacher, keyed
by the file's SHA-256 as well, so its test and noise accuracies are measured once.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from harness import contract
from harness.config.sections import TrialConfig
from harness.context import TrialContext, network_for
from harness.data import DATASETS
from harness.efficiency import count_ops
from harness.errors import HarnessInputError
from harness.files import DamagedState, read_json, write_atomically, write_json_atomically
from harness.models import SpikingNetwork, count_parameters, relu
from harness.training import Fitting, accuracy, full_precision, noise_accuracies

CACHE_FORMAT = 1
TEACHER_FILE = "teacher.pt"  # `<cache>/<key>/teacher.pt`: a trained teacher, written whole
TEACHER_FAILED = "failed.txt"  # beside it when its training failed (a sweep's trials waiting for it go on)
NOISE_FILE = "noise_accuracy.json"  # beside teacher.pt: its test accuracy per "<type>/<level>"


@dataclass(frozen=True)
class TeacherRecord:
    """A loaded teacher and what is known about it."""

    model: SpikingNetwork
    key: str
    path: Path
    metrics: dict[str, float]
    trained_now: bool


def teacher_key(ctx: TrialContext) -> str:
    """The content address of the teacher this trial needs."""
    return teacher_key_of(ctx.config)


@functools.lru_cache(maxsize=32)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_digest(path: str) -> str:
    """SHA-256 of a checkpoint file (read once per process while its size and time stay)."""
    stat = os.stat(path)
    return _file_digest(path, stat.st_size, stat.st_mtime_ns)


def read_checkpoint(path: str) -> dict[str, torch.Tensor]:
    """The state dict in `path` (see the module docstring).

    Raises:
        HarnessInputError: one line: the file cannot be read, needs unpickling of arbitrary
            objects (refused by `weights_only=True`, nothing of it run), or is not a state dict.
    """
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = " ".join(str(exc).split())[:200]
        raise HarnessInputError(
            f"teacher.checkpoint {path}: not a plain state dict; it needs unpickling of other objects, which "
            f"torch.load(weights_only=True) refuses ({first}); save model.state_dict() instead"
        ) from None
    except (OSError, RuntimeError, EOFError, ValueError) as exc:
        raise HarnessInputError(f"teacher.checkpoint {path}: cannot be read ({type(exc).__name__}: {exc})") from None
    if isinstance(saved, dict) and isinstance(saved.get("state_dict"), dict):
        saved = saved["state_dict"]  # the harness's own teacher.pt
    if not isinstance(saved, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in saved.items()
    ):
        raise HarnessInputError(
            f"teacher.checkpoint {path}: not a state dict (a mapping of names to tensors); save model.state_dict()"
        )
    return saved


def mismatch(state: dict[str, torch.Tensor], model: torch.nn.Module, shapes: bool) -> str | None:
    """The first key (or, with `shapes`, tensor shape) in which `state` and `model`'s state dict
    differ, as a phrase; None when they agree."""
    expected = model.state_dict()
    for key in expected:
        if key not in state:
            return f"lacks {key!r}"
    for key in state:
        if key not in expected:
            return f"has {key!r}, which the network lacks"
    if shapes:
        for key, tensor in expected.items():
            if tuple(state[key].shape) != tuple(tensor.shape):
                return f"has {key!r} of shape {list(state[key].shape)}, the network {list(tensor.shape)}"
    return None


def check_teacher_checkpoint(config: TrialConfig, label: str = "teacher.checkpoint") -> None:
    """Reads `teacher.checkpoint` (if set) and checks its keys against `teacher.*`'s network,
    built for a nominal input (the keys do not depend on the data's shape; the shapes are checked
    when the trial loads it). `label` names where the path was given.

    Raises:
        HarnessInputError: one line naming `label` and the first key that differs.
    """
    path = config.teacher.checkpoint
    if path is None:
        return
    try:
        state = type(config.teacher.model).import_state_dict(read_checkpoint(path))
    except HarnessInputError as exc:
        raise HarnessInputError(f"{label}: {exc}") from None
    nominal = config.teacher.model.build(in_channels=3, num_classes=10, image_shape=(32, 32), activation=relu)
    problem = mismatch(state, nominal, shapes=False)
    if problem is not None:
        raise HarnessInputError(f"{label}: {path} {problem} ({describe_teacher(config)})")


def teacher_key_of(config: TrialConfig) -> str:
    """The content address of the teacher a config needs."""
    cfg = config.model_dump(mode="json")
    identity: dict[str, Any] = {
        "format": CACHE_FORMAT,
        "dataset": {k: cfg["dataset"][k] for k in ("name", "val_fraction", "split_seed", "image_size")},
        "teacher": {k: v for k, v in cfg["teacher"].items() if k != "seed"},  # the seed is below
        "train": {k: cfg["train"][k] for k in ("batch_size", "momentum", "weight_decay", "schedule", "augment")},
        "seed": config.teacher.seed_for(config.seed),
    }
    if DATASETS.get(config.dataset.name).frames:  # the frames it averages depend on the binning
        identity["time_bins"] = config.snn.time_steps
    if config.teacher.checkpoint is not None:  # the weights it starts from, whatever the file's name
        identity["checkpoint_sha256"] = checkpoint_digest(config.teacher.checkpoint)
    blob = json.dumps(identity, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def describe_teacher(config: TrialConfig) -> str:
    """`resnet depth=18 width=16`: the teacher's family and its own arguments, whatever they are."""
    arguments = " ".join(f"{key}={value}" for key, value in config.teacher.model.arguments().items())
    return f"{config.teacher.arch} {arguments}".strip()


def build_teacher(ctx: TrialContext) -> SpikingNetwork:
    """An untrained ReLU network of `teacher.*`, initialised from the teacher's seed. The ANN
    sees what the trial's encoding gives a teacher (`Encoder.teacher_input`): the normalised
    image (direct encoding) whatever the student's image encoding; event frames averaged over time."""
    seed = ctx.config.teacher.seed_for(ctx.config.seed)
    return network_for(ctx, ctx.config.teacher.model, relu, seed=seed, encoder=ctx.encoder().teacher_input())


def train_teacher(ctx: TrialContext) -> tuple[SpikingNetwork, dict[str, float]]:
    """Trains the teacher with cross-entropy for `teacher.epochs`; returns it and its metrics."""
    cfg, data = ctx.config, ctx.data
    teacher = cfg.teacher
    model = build_teacher(ctx)
    if teacher.checkpoint is not None:
        state = type(teacher.model).import_state_dict(read_checkpoint(teacher.checkpoint))
        problem = mismatch(state, model, shapes=True)
        if problem is not None:
            raise HarnessInputError(f"teacher.checkpoint: {teacher.checkpoint} {problem} ({describe_teacher(cfg)})")
        model.load_state_dict(state)
        ctx.log(f"teacher weights from {teacher.checkpoint}; {teacher.epochs} epoch(s) of training on top")
    fitting = Fitting(
        [model],
        cfg.train,
        epochs=teacher.epochs,
        samples=len(data.train_x),
        seed=teacher.seed_for(cfg.seed),
        optimizer=teacher.optimizer,
        lr=teacher.lr,
        owner=f"the teacher ({describe_teacher(cfg)})",
    )

    def loss_fn(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(images, 1).mean(0), labels)

    evaluate = dict(time_steps=1, batch_size=cfg.train.eval_batch_size)
    for epoch in range(1, teacher.epochs + 1):
        loss = fitting.epoch(loss_fn, data.train_x, data.train_y, epoch)
        val = accuracy(model, data.val_x, data.val_y, **evaluate)
        ctx.log(f"teacher epoch {epoch}/{teacher.epochs}  loss {loss:.4f}  val_accuracy {val:.4f}")
    metrics = {
        contract.TEACHER_TEST_ACCURACY: accuracy(model, data.test_x, data.test_y, **evaluate),
        contract.TEACHER_PARAMS: float(count_parameters(model)),
        **teacher_cost(model, ctx),
    }
    return model, metrics


def teacher_cost(model: SpikingNetwork, ctx: TrialContext) -> dict[str, float]:
    """MACs and energy per sample of the ANN teacher, measured on a test batch."""
    x = ctx.data.test_x[:64]
    with torch.inference_mode(), count_ops(model.eval(), 1) as counts:
        counts.batch = counts.samples = len(x)
        model(x, 1)
    summary = counts.summary(1)
    return {contract.TEACHER_MACS: summary[contract.MACS], contract.TEACHER_ENERGY_UJ: summary[contract.ENERGY_UJ]}


def load_or_train_teacher(ctx: TrialContext) -> TeacherRecord:
    """Returns the cached teacher for this trial, training and caching it first if needed."""
    with full_precision():  # trained and measured once, in fp32, whatever a trial's train.precision
        return _load_or_train_teacher(ctx)


def _load_or_train_teacher(ctx: TrialContext) -> TeacherRecord:
    key = teacher_key(ctx)
    folder = ctx.teacher_cache / key
    path = folder / TEACHER_FILE
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():
            ctx.log(f"teacher {key} from cache {path}")
            model = build_teacher(ctx)
            try:
                saved = torch.load(path, map_location=ctx.device, weights_only=True)
                model.load_state_dict(saved["state_dict"])
                metrics = dict(saved["metrics"])
            except Exception as exc:  # noqa: BLE001 - unreadable for any reason: say which file
                raise DamagedState(
                    f"{path}: the cached teacher is damaged ({type(exc).__name__}); remove that file to train it again"
                ) from None
            return TeacherRecord(model, key, path, metrics, trained_now=False)
        teacher = ctx.config.teacher
        doing = "training" if teacher.checkpoint is None else "fine-tuning" if teacher.epochs else "measuring"
        ctx.log(f"{doing} teacher {key} ({describe_teacher(ctx.config)}); cached at {path}")
        model, metrics = train_teacher(ctx)
        saved = {"state_dict": model.state_dict(), "metrics": metrics, "config": ctx.config.model_dump(mode="json")}
        write_atomically(path, lambda scratch: torch.save(saved, scratch))
        return TeacherRecord(model, key, path, metrics, trained_now=True)


def teacher_noise_accuracies(record: TeacherRecord, ctx: TrialContext) -> dict[str, float]:
    """The teacher's test accuracy under every noise of `eval.noise`, as
    `teacher_noise/<type>/<level>`: computed once per teacher and (type, level), on the same
    seeded corruptions as the students', and kept beside the teacher in the cache."""
    path = record.path.parent / NOISE_FILE
    cached: dict[str, float] = {}
    if path.exists():
        try:
            cached = dict(read_json(path, "the teacher's noise accuracies"))
        except (DamagedState, TypeError, ValueError) as exc:  # a cache: computed again, and said so
            ctx.log(f"{exc}; computing them again")
    noise = ctx.config.eval.noise
    missing = {
        kind: [lv for lv in levels if contract.noise_metric(kind, lv, "") not in cached]
        for kind, levels in noise.items()
    }
    missing = {kind: levels for kind, levels in missing.items() if levels}
    if missing:
        with full_precision():
            cached |= _noise_accuracies(record, ctx, missing)
        write_json_atomically(path, cached)  # concurrent trials may both compute; either file is whole and right
    keys = [contract.noise_metric(kind, level, "") for kind, levels in noise.items() for level in levels]
    return {contract.TEACHER_NOISE + key: cached[key] for key in keys}


def _noise_accuracies(record: TeacherRecord, ctx: TrialContext, missing: dict[str, list[float]]) -> dict[str, float]:
    data = ctx.data
    return noise_accuracies(
        record.model,
        data.test_x,
        data.test_y,
        missing,
        prefix="",
        time_steps=1,
        batch_size=ctx.config.train.eval_batch_size,
        corruption=data.corruption,
    )
