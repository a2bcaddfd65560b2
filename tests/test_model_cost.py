"""finesweep.callbacks.ModelCost: what it logs, on a real Lightning fit (CPU, a few batches)."""

from __future__ import annotations

import pytest

pl = pytest.importorskip("pytorch_lightning")
import torch  # noqa: E402
from finesweep.callbacks import ModelCost  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402


class Small(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
        self.net[0].weight.requires_grad_(False)  # 32 frozen parameters

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        return nn.functional.cross_entropy(self(batch[0]), batch[1])

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", nn.functional.cross_entropy(self(batch[0]), batch[1]))

    def configure_optimizers(self):
        return torch.optim.SGD([p for p in self.parameters() if p.requires_grad], lr=0.1)


def _fit(callback: ModelCost) -> dict[str, float]:
    data = TensorDataset(torch.randn(48, 4), torch.randint(0, 2, (48,)))
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[callback])
    trainer.fit(Small(), DataLoader(data, batch_size=16), DataLoader(data, batch_size=8))
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


def test_model_cost_logs_size_latency_and_memory():
    logged = _fit(ModelCost())
    params = 4 * 8 + 8 + 8 + 8 + 8 * 2 + 2  # linear, batch norm's weight and bias, linear
    assert logged["n_params"] == params
    # On the CPU: float32 parameters plus batch norm's buffers (running mean and variance,
    # float32, and its batch count, int64).
    assert logged["peak_memory_mb"] == pytest.approx((params * 4 + (8 + 8) * 4 + 8) / 2**20)
    assert 0 < logged["latency_ms"] < 1000


def test_model_cost_prefix_and_trainable_only():
    logged = _fit(ModelCost(prefix="cost/", trainable_only=True))
    assert logged["cost/n_params"] == 4 * 8 + 8 + 8 + 8 + 8 * 2 + 2 - 32
    assert "n_params" not in logged and "cost/latency_ms" in logged
