"""The actor-critic's equations, one function each (read against the seed and CleanRL's ``ppo.py``).

Episode. One completion o = (o_0, ..., o_{n-1}) is one episode; the state before token k is
s_k = (frames, prompt, o_{<k}), the action is o_k, and nothing follows the last token (V_n = 0).
A reward judges one span of the answer (the description, the labels, the whole answer:
``rewards.registry.reward_span``); ``span`` below is the (B, T) mask of the tokens that produce it.

    (1) reward        r_k = w_tok * w_1 * r^tok_k + w_seq * [k = last span token] * R(o)
                      r^tok_k = R1(I, T_k) - R1(I, T_{k-1}), T_0 = "" (the seed's increments: they
                      telescope to R1(I, T) - R1(I, ""); rewards/clip_alignment.py)
                      R(o) = sum_{i != 1} w_i * R_i(o): the recipe's other rewards (w_i its
                      reward_weights), so R1 is never paid twice
    (2) value         V_k = V_phi(h_k) = MLP(h_k), h_k the policy's last hidden state at the
                      position that predicts o_k (shared body; only the MLP is new)
    (3) TD error      delta_k = r_k + gamma * V_{k+1} - V_k,                 V_n = 0
    (4) GAE           A_k = delta_k + gamma * lambda * A_{k+1},              A_n = 0
                      G_k = A_k + V_k; with lambda = 1 (the default), G_k is the Monte-Carlo
                      reward-to-go sum_{j>=k} gamma^{j-k} r_j: the seed's critic target
    (5) normalise     A^_k = (A_k - mean_span(A)) / (std_span(A) + eps) on the span, 0 outside it:
                      tokens no reward judges get no advantage; the KL term alone holds them
    (6) policy loss   L_pi = -mean_k min(rho_k A^_k, clip(rho_k, 1-eps_lo, 1+eps_hi) A^_k)  (TRL's)
    (7) value loss    V^clip_k = V_old,k + clip(V_k - V_old,k, -eps_V, +eps_V)
                      L_V = 1/2 mean_span max((V_k - G_k)^2, (V^clip_k - G_k)^2)
    (8) total         L = L_pi + c_V * L_V  (+ TRL's beta * KL to the reference model)
"""

from __future__ import annotations

import math

import torch
from torch import nn

# Added to std(A) in (5) so a span of equal advantages does not divide by zero (CleanRL's 1e-8).
ADVANTAGE_NORM_EPS = 1e-8
# Gain of the value head's output layer: near-zero output at first, so V_k starts at the bias,
# which is set to the mean return of the first rollout (CleanRL uses 1.0 for Atari-scale returns;
# for returns in [0, 1] a large random output would swamp the policy's first updates).
OUTPUT_LAYER_GAIN = 0.01


class ValueHead(nn.Module):
    """V_phi of (2): hidden -> width -> 1, orthogonal init (CleanRL) from a fixed seed.

    ``bias_initialised`` is saved with the weights: the output bias is set once, to the mean
    return of the first rollout (:meth:`initialise_bias`), and a resumed run keeps its own.
    """

    def __init__(self, hidden_size: int, width: int, seed: int = 0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(hidden_size, width), nn.Tanh(), nn.Linear(width, 1))
        self.register_buffer("bias_initialised", torch.tensor(False))
        with torch.random.fork_rng(devices=[]):  # every process draws the same head, without talking
            torch.manual_seed(seed)
            for layer, gain in ((self.net[0], math.sqrt(2.0)), (self.net[2], OUTPUT_LAYER_GAIN)):
                nn.init.orthogonal_(layer.weight, gain=gain)
                nn.init.zeros_(layer.bias)

    @torch.no_grad()
    def initialise_bias(self, mean_return: float) -> None:
        self.net[2].bias.fill_(float(mean_return))
        self.bias_initialised.fill_(True)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """(B, T, H) hidden states -> (B, T) values, in the head's dtype (float32) whatever the body's."""
        weight = self.net[0].weight
        return self.net(hidden_states.to(device=weight.device, dtype=weight.dtype)).squeeze(-1)


def completion_states(last_hidden_state: torch.Tensor, num_completion_tokens: int) -> torch.Tensor:
    """h_k of (2): position j predicts token j + 1, so completion token k (at L - T + k) is
    predicted from position L - T + k - 1: the slice TRL's fused log-prob head scores."""
    t = num_completion_tokens
    return last_hidden_state[:, -(t + 1) : -1]


@torch.no_grad()
def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(3)-(4) over (B, T) right-padded episodes; ``mask`` is 1 on real tokens. Returns
    (advantages, returns), both 0 on padding: the state after the last real token is terminal."""
    mask = mask.to(values.dtype)
    rewards = rewards.to(values.dtype) * mask
    values = values * mask
    advantages = torch.zeros_like(values)
    last_gae_lam = torch.zeros_like(values[:, 0])
    num_steps = values.shape[1]
    for t in reversed(range(num_steps)):
        if t == num_steps - 1:
            next_non_terminal = torch.zeros_like(values[:, t])
            next_values = torch.zeros_like(values[:, t])
        else:
            next_non_terminal = mask[:, t + 1]  # 0 once the episode has ended: V_n = 0, A_n = 0
            next_values = values[:, t + 1]
        delta = rewards[:, t] + gamma * next_values * next_non_terminal - values[:, t]  # (3)
        last_gae_lam = delta + gamma * lam * next_non_terminal * last_gae_lam  # (4)
        advantages[:, t] = last_gae_lam
    advantages = advantages * mask
    returns = advantages + values  # (4): G_k = A_k + V_k
    return advantages, returns


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(x.dtype)
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def masked_normalize(x: torch.Tensor, mask: torch.Tensor, eps: float = ADVANTAGE_NORM_EPS) -> torch.Tensor:
    """(5): zero mean, unit (population) std over the masked tokens; 0 outside the mask."""
    mean = masked_mean(x, mask)
    std = masked_mean((x - mean) ** 2, mask).sqrt()
    return (x - mean) / (std + eps) * mask.to(x.dtype)


def clipped_value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, clip: float | None
) -> torch.Tensor:
    """L_V of (7), a masked mean over tokens (CleanRL's clip_vloss branch; clip=None: plain MSE/2)."""
    loss_unclipped = (values - returns) ** 2
    if clip is None:
        return 0.5 * masked_mean(loss_unclipped, mask)
    values_clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    loss_clipped = (values_clipped - returns) ** 2
    return 0.5 * masked_mean(torch.max(loss_unclipped, loss_clipped), mask)


def explained_variance(predicted: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> float:
    """1 - Var(G - V) / Var(G) over masked tokens (CleanRL's diagnostic: below 0, the critic is
    worse than a constant); NaN when Var(G) = 0."""
    mask = mask.bool()
    y_pred, y_true = predicted[mask].float(), target[mask].float()
    if y_true.numel() == 0:
        return float("nan")
    var_y = y_true.var(unbiased=False)
    if var_y == 0:
        return float("nan")
    return float(1.0 - (y_true - y_pred).var(unbiased=False) / var_y)


def last_index(mask: torch.Tensor) -> torch.Tensor:
    """Per row, the index of the last 1 in a (B, T) 0/1 mask (-1 for a row with none)."""
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    return torch.where(mask.bool(), positions, torch.full_like(positions, -1)).max(dim=1).values
