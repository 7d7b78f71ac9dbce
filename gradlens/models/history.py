"""History world models (HWM): ŝ_{t+1} = g(s_1, [ŝ_1, a_1], …, [ŝ_t, a_t]).

In a rollout the model reads its OWN predictions ŝ_t (with their gradient: the circuitous paths of PAPER.md §3); in
fitting it is teacher-forced with the true states. Tokens: x_0 = E_s(s_1) + P(0), then x_t = E([ŝ_t, a_t]) + P(t)
(so s_1 enters twice: as the prefix token and inside the first pair). Backbones: LSTM (`hwm-rnn`) or a KV-cached
causal transformer (`hwm-transformer`); see `gradlens.models.sequence`.
"""
from __future__ import annotations

from gradlens.envs.base import System
from gradlens.models.base import WorldModel
from gradlens.models.sequence import LSTMConfig, TokenCore, TransformerConfig, sequence_model


class HistoryCore(TokenCore):
    """Tokens E([ŝ_t, a_t]) + P(t)."""

    reads_states = True


def make_hwm_rnn(system: System, **overrides) -> WorldModel:
    """LSTM HWM (width 48, embedders and decoder MLP (64, 64) relu); overrides: the fields of `LSTMConfig`."""
    return sequence_model("hwm-rnn", system, LSTMConfig, HistoryCore, overrides)


def make_hwm_transformer(system: System, **overrides) -> WorldModel:
    """Transformer HWM (2 layers, 3 heads, width 48); overrides: the fields of `TransformerConfig`."""
    return sequence_model("hwm-transformer", system, TransformerConfig, HistoryCore, overrides)
