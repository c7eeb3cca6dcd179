from __future__ import annotations

import torch
import torch.nn.functional as F

from baselines.direct import tet_loss
from harness.methods import METHODS


def test_tet_is_the_mean_of_per_step_cross_entropies() -> None:
    torch.manual_seed(0)
    steps, y = torch.randn(4, 6, 10), torch.randint(0, 10, (6,))
    expected = torch.stack([F.cross_entropy(steps[t], y) for t in range(4)]).mean()
    torch.testing.assert_close(tet_loss(steps, y), expected)


def test_baselines_are_registered_by_name() -> None:
    assert {"kd", "direct"} <= set(METHODS.names())
    assert METHODS.get("direct").__name__ == "DirectMethod"
