"""Actions world models (AWM): ŝ_{t+1} = g(s_1, a_1, …, a_t); predicted states never re-enter the model.

Tokens: x_0 = E_s(s_1) + P(0), then x_t = E_a(a_t) + P(t). An open-loop prediction is one causal pass over all H
actions; a closed-loop rollout steps with carried memory (still never reading the states it is given). Backbones:
LSTM (`awm-rnn`), KV-cached causal transformer (`awm-transformer`), and a diagonal linear recurrent unit stack computed
with a parallel associative scan (`awm-ssm`, the paper's open question on SSMs); see `gradlens.models.sequence`.
"""
from __future__ import annotations

from gradlens.envs.base import System
from gradlens.models.base import WorldModel
from gradlens.models.sequence import LSTMConfig, SSMConfig, TokenCore, TransformerConfig, sequence_model


class ActionsCore(TokenCore):
    """Tokens E_a(a_t) + P(t)."""

    reads_states = False


def make_awm_rnn(system: System, **overrides) -> WorldModel:
    """LSTM AWM (width 48, embedders and decoder MLP (64, 64) relu); overrides: the fields of `LSTMConfig`."""
    return sequence_model("awm-rnn", system, LSTMConfig, ActionsCore, overrides)


def make_awm_transformer(system: System, **overrides) -> WorldModel:
    """Transformer AWM (2 layers, 3 heads, width 48); overrides: the fields of `TransformerConfig`."""
    return sequence_model("awm-transformer", system, TransformerConfig, ActionsCore, overrides)


def make_awm_ssm(system: System, **overrides) -> WorldModel:
    """LRU-stack AWM (2 layers, width 48, 48 complex states); overrides: the fields of `SSMConfig`."""
    return sequence_model("awm-ssm", system, SSMConfig, ActionsCore, overrides)
