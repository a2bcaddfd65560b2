"""Recurrent building blocks shared by the text and speech tasks."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU}


def pool(states: torch.Tensor, lengths: torch.Tensor, kind: str, bidirectional: bool) -> torch.Tensor:
    """(batch, time, features) -> (batch, features), ignoring padded steps.

    ``last`` takes the forward direction's state at each sequence's own last step and, when
    bidirectional, the backward direction's state at step 0 (where it finished reading)."""
    steps = torch.arange(states.shape[1], device=states.device)
    valid = (steps[None, :] < lengths[:, None]).unsqueeze(-1)
    if kind == "mean":
        return (states * valid).sum(1) / lengths[:, None].clamp(min=1)
    if kind == "max":
        return states.masked_fill(~valid, float("-inf")).amax(1)
    last = states[torch.arange(len(states), device=states.device), (lengths - 1).clamp(min=0)]
    if not bidirectional:
        return last
    half = states.shape[2] // 2
    return torch.cat([last[:, :half], states[:, 0, half:]], dim=1)


class RecurrentStack(nn.Module):
    """Single-layer RNNs stacked, so that ``frozen_layers`` can freeze them one at a time."""

    def __init__(self, cell: str, input_size: int, hidden_size: int, layers: int,
                 bidirectional: bool, dropout: float) -> None:
        super().__init__()
        width = hidden_size * (2 if bidirectional else 1)
        self.layers = nn.ModuleList(
            CELLS[cell](input_size if i == 0 else width, hidden_size, batch_first=True,
                        bidirectional=bidirectional) for i in range(layers))
        self.dropout = nn.Dropout(dropout)
        self.output_size = width

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        states = inputs
        for index, layer in enumerate(self.layers):
            if index:
                states = self.dropout(states)
            packed = pack_padded_sequence(states, lengths.cpu().clamp(min=1), batch_first=True,
                                          enforce_sorted=False)
            output, _ = layer(packed)
            states, _ = pad_packed_sequence(output, batch_first=True, total_length=inputs.shape[1])
        return states
