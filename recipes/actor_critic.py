"""Stage-1 actor-critic: PPO with a token-level critic, built on TRL 1.16's GRPOTrainer.

The equations (1)-(8) and their pure functions live in :mod:`recipes.ppo_math`; this module is
the glue that feeds them from TRL's generation and loss passes. The project's only trainer
subclass.

What it reads from TRL, and where:
- GRPOTrainer replaces the model's forward by a fused log-prob head that returns neither logits
  nor hidden states. A forward hook on the policy's backbone (``model.base_model``, the
  Idefics3Model) stores the last hidden state of that same forward pass; the states of the
  completion tokens are ``hidden[:, -(T+1):-1]`` (``ppo_math.completion_states``).
- TRL's ``_compute_loss`` runs the forward, then reads ``inputs["advantages"]`` and accepts
  (B, T) advantages. We hand it a copy of the batch and fill its "advantages" with (4)-(5) right
  after the forward, so the policy term is TRL's own code fed with GAE advantages from the very
  forward pass that produced the log-probs.
- The (B, T) ``token_rewards``, ``span_mask`` (and ``old_values``) put in the generated batch are
  shuffled and split with it by TRL (``shuffle_sequence_dict``/``split_tensor_dict`` take any
  (B, ...) tensor).

TRL and transformers internals overridden (each has a test in tests/test_actor_critic.py that
fails loudly when its signature changes: :data:`TRL_OVERRIDES`):
``_calculate_rewards`` (keeps the per-function rewards of the rollout), ``_generate_and_score_completions``
(adds r_k, the span mask and V_old to the batch), ``_get_per_token_logps_and_entropies`` (captures
the hidden states; fills (4)-(5)), ``_compute_loss`` (adds (7)), ``create_optimizer`` (the head's
param group), ``training_step`` (averages the head's gradients over processes), ``_clip_grad_norm``
(clips the head on its own), ``save_model`` / ``_load_from_checkpoint`` / ``_load_best_model``
(the head's file). The head's gradients are cleared after every optimizer step by a
``TrainerCallback`` (the Trainer zeroes only the model's).

V_old. Advantages and returns use the values at generation time (CleanRL computes them once per
rollout). When each generated batch is used in one optimizer step (num_iterations = 1 and
steps_per_generation dividing gradient_accumulation_steps, TRL's default) the weights have not
moved, so V_old = V_theta detached at loss time. Otherwise V_old is read from the hidden states of
TRL's no-grad pi_old pass at generation time and travels with the batch. Either way the critic
costs no extra forward pass of the body.

The value head is a separate ``nn.Module`` held by the trainer (not a submodule of the model), so
the saved model folder is exactly what ``AutoModelForImageTextToText.from_pretrained`` loads; the
head is written beside it as ``value_head.safetensors`` and restored on resume. Its parameters are
one extra optimizer param group with their own learning rate; their gradients are clipped on their
own (a fresh head's large early gradients must not shrink the policy's step through a joint norm)
and, with several processes, averaged across them once per optimizer step (DDP wraps the policy
only: inside the model the head would be saved into its weights, and DDP with
find_unused_parameters, which TRL turns on for VLMs, fails on its late gradients). Checked with 2
gloo processes; DeepSpeed and FSDP are not supported.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import TrainerCallback
from trl import GRPOConfig, GRPOTrainer

from recipes.ppo_math import (
    ValueHead,
    clipped_value_loss,
    completion_states,
    explained_variance,
    gae,
    last_index,
    masked_mean,
    masked_normalize,
)
from recipes.reward_control import token_rewards_against_other_clips
from rewards import clip_alignment as r1
from rewards.registry import reward_span
from taxonomy.spans import locate_description, span_chars, token_span_mask

logger = logging.getLogger(__name__)

ALGORITHMS = ("actor_critic", "grpo")
GRANULARITIES = ("token", "word")
VALUE_HEAD_FILE = "value_head.safetensors"
# TRL loss types whose surrogate is per token, so (B, T) advantages mean what (6) says. 'vespo' and
# 'luspo' weight whole sequences by the sign of a per-sequence advantage.
TOKEN_LEVEL_LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo", "cispo", "sapo")
# The GRPOTrainer/Trainer methods this module overrides, with the parameters it relies on.
TRL_OVERRIDES = {
    "_calculate_rewards": ("self", "inputs", "prompts", "completions", "completion_ids_list"),
    "_generate_and_score_completions": ("self", "inputs"),
    "_get_per_token_logps_and_entropies": ("self", "model", "input_ids", "attention_mask", "logits_to_keep"),
    "_compute_loss": ("self", "model", "inputs"),
    "create_optimizer": ("self", "model"),
    "training_step": ("self", "model", "inputs", "num_items_in_batch"),
    "_clip_grad_norm": ("self", "model"),
    "save_model": ("self", "output_dir", "_internal_call"),
    "_load_from_checkpoint": ("self", "resume_from_checkpoint", "model"),
    "_load_best_model": ("self",),
}

# token_reward_fn(completion_texts, completion_token_ids, inputs) -> per completion, one reward per
# token (lists of len(completion_token_ids[b])), or a (B, >=T) tensor. ``inputs`` are the dataset
# rows of the completions (one dict each: images, id, ...). Texts are decoded with
# skip_special_tokens=True, as TRL decodes the completions its reward functions see. Like a
# registered reward, it says the span it judges in a ``span`` attribute (none: the whole answer).
# When its rewards are the increments of one of the stage's ``reward_funcs`` it names that reward in
# a ``pays`` attribute: that reward is then paid token by token, with its YAML weight, and left out
# of the sequence reward, so no reward is paid twice and a recipe can add others beside it.
TokenRewardFn = Callable[[list[str], list[list[int]], list[dict]], "Sequence[Sequence[float]] | torch.Tensor"]


# ---------------------------------------------------------------------------------------------
# Config


@dataclass
class ActorCriticConfig(GRPOConfig):
    """GRPOConfig plus the critic's keys. Every GRPO key keeps its meaning (epsilon is the policy
    clip of (6), loss_type its aggregation, beta its KL); ``num_generations`` still groups the
    completions of a clip (TRL needs it) but no group baseline is used."""

    gamma: float = field(
        default=1.0,
        metadata={"help": "Discount gamma in (3)-(4). 1.0: a token late in the answer counts as much as an early one."},
    )
    gae_lambda: float = field(
        default=1.0,
        metadata={
            "help": "GAE lambda in (4). 1.0 (the seed's critic objective): returns are the Monte-Carlo reward-to-go "
            "and the advantage carries no critic bias; < 1 trades bias for variance."
        },
    )
    value_loss_coef: float = field(default=0.5, metadata={"help": "c_V in (8) (CleanRL's vf_coef)."})
    value_clip: float | None = field(
        default=None,
        metadata={
            "help": "eps_V in (7), in reward units: how far V may move from V_old per update; None (the default): "
            "no clip (Andrychowicz et al. 2021 found value clipping does not help)."
        },
    )
    value_learning_rate: float = field(
        default=1e-4,
        metadata={"help": "Learning rate of the value head (its own optimizer param group; same schedule)."},
    )
    value_head_hidden_size: int = field(
        default=256, metadata={"help": "Width of the value head MLP: hidden -> this -> 1."}
    )
    value_loss_trains_body: bool = field(
        default=False,
        metadata={
            "help": "Let the value loss back-propagate into the shared policy body (CleanRL's shared Atari "
            "network). False: the head reads detached hidden states, so a fresh critic cannot disturb the LM."
        },
    )
    critic_warmup_steps: int = field(
        default=0,
        metadata={
            "help": "Optimizer steps at the start in which only the critic learns (the policy term is left out): "
            "a fresh critic is noise, and its advantages would push the policy at random."
        },
    )
    normalize_advantages: bool = field(
        default=True, metadata={"help": "Apply (5): normalise advantages over each micro-batch's judged span."}
    )
    token_reward_granularity: str = field(
        default="word",
        metadata={
            "help": "Where dense CLIP rewards are scored: 'token' (after every policy token) or 'word' (after "
            "each word: fewer CLIP text encodings, rewards on word-final tokens)."
        },
    )
    token_reward_weight: float = field(default=1.0, metadata={"help": "w_tok in (1): weight of the dense rewards."})
    terminal_reward_weight: float = field(
        default=1.0,
        metadata={
            "help": "w_seq in (1): weight of the sequence reward R(o) paid on the last judged token: TRL's weighted "
            "sum of the reward_funcs but the one the dense rewards pay as increments (token_reward_fn.pays: R1 in "
            "stage 1, whose increments sum to R1 - R1(''))."
        },
    )

    def __post_init__(self):
        super().__post_init__()
        for name in ("gamma", "gae_lambda"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if self.value_loss_coef < 0:
            raise ValueError(f"value_loss_coef must be >= 0, got {self.value_loss_coef}")
        if self.value_clip is not None and self.value_clip <= 0:
            raise ValueError(f"value_clip must be > 0 or None (no clipping), got {self.value_clip}")
        if self.value_learning_rate <= 0:
            raise ValueError(f"value_learning_rate must be > 0, got {self.value_learning_rate}")
        if self.value_head_hidden_size < 1:
            raise ValueError(f"value_head_hidden_size must be >= 1, got {self.value_head_hidden_size}")
        if self.critic_warmup_steps < 0:
            raise ValueError(f"critic_warmup_steps must be >= 0, got {self.critic_warmup_steps}")
        if self.token_reward_granularity not in GRANULARITIES:
            raise ValueError(
                f"token_reward_granularity must be one of {GRANULARITIES}, got {self.token_reward_granularity!r}"
            )


# ---------------------------------------------------------------------------------------------
# Model plumbing


def policy_backbone(model: nn.Module) -> nn.Module:
    """The module whose output is the policy's last hidden state (Idefics3Model for SmolVLM).

    Unwraps DDP/accelerate (``.module``) and peft (``get_base_model``) and returns
    ``base_model``, the attribute TRL's fused log-prob head calls (``base_model_prefix``).
    """
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = model.module
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    backbone = getattr(model, "base_model", None)
    if backbone is None or backbone is model:
        raise TypeError(
            f"{type(model).__name__} has no separate backbone (base_model); the actor-critic needs a model "
            "with a language-model head on a backbone, like Idefics3ForConditionalGeneration"
        )
    return backbone


def text_hidden_size(model: nn.Module) -> int:
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = model.module
    return int(model.config.get_text_config().hidden_size)


class ClearValueHeadGradients(TrainerCallback):
    """The Trainer zeroes the model's gradients after each optimizer step; the head is not part
    of the model, so its gradients are cleared here (else every step adds onto the last)."""

    def __init__(self, head: nn.Module):
        self.head = head

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.head.zero_grad(set_to_none=True)


# ---------------------------------------------------------------------------------------------
# The trainer


class ActorCriticTrainer(GRPOTrainer):
    """GRPOTrainer with a value head and GAE advantages from per-token rewards (module docstring).

    Arguments are GRPOTrainer's, with ``args`` an :class:`ActorCriticConfig`, plus
    ``token_reward_fn`` (see :data:`TokenRewardFn`; None: only the sequence reward, paid on the last
    judged token, as in RLHF-style PPO).
    """

    _tag_names = ["trl", "grpo", "actor-critic", "smoldrive"]

    def __init__(self, *args: Any, token_reward_fn: TokenRewardFn | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if not isinstance(self.args, ActorCriticConfig):
            raise TypeError(f"args must be an ActorCriticConfig, got {type(self.args).__name__}")
        if self.loss_type not in TOKEN_LEVEL_LOSS_TYPES:
            raise ValueError(
                f"loss_type {self.loss_type!r} weights whole sequences; the actor-critic needs a per-token "
                f"surrogate: one of {TOKEN_LEVEL_LOSS_TYPES}"
            )
        if self.is_deepspeed_enabled or self.is_fsdp_enabled:
            raise NotImplementedError("the actor-critic's value head supports single-process and DDP training only")
        self.token_reward_fn = token_reward_fn
        # (1): the reward the dense term pays as increments carries its YAML weight there and is left
        # out of the sequence reward R(o); every other weighted reward on the last judged token.
        paid_densely = torch.tensor([name == getattr(token_reward_fn, "pays", None) for name in self.reward_func_names])
        paid_densely = paid_densely.to(self.reward_weights.device)
        self.dense_reward_weight = float(self.reward_weights[paid_densely].sum()) if paid_densely.any() else 1.0
        self.sequence_reward_weights = self.reward_weights * ~paid_densely
        # The spans the rewards judge: advantages go on their union only (ppo_math (5)).
        weighted = [f for f, w in zip(self.reward_funcs, self.sequence_reward_weights.tolist()) if w != 0]
        spans = {reward_span(f) for f in weighted} if self.args.terminal_reward_weight else set()
        if token_reward_fn is not None and self.args.token_reward_weight:
            spans.add(reward_span(token_reward_fn))
        self.judged_spans = sorted(spans or {"answer"})
        self.value_head = ValueHead(
            text_hidden_size(self.model), self.args.value_head_hidden_size, seed=self.args.seed
        ).to(self.accelerator.device)
        self.add_callback(ClearValueHeadGradients(self.value_head))
        # The hook stores the backbone's last hidden state only while a capture list is open, so
        # generation steps and reference-model passes (PEFT disables the adapter on this same
        # backbone) are ignored.
        self._captured_hidden_states: list[torch.Tensor] | None = None
        self._hook = policy_backbone(self.model).register_forward_hook(self._store_last_hidden_state)
        self._loss_inputs: dict | None = None  # the batch copy whose "advantages" (4)-(5) fill in
        self._rollout: dict | None = None  # what _calculate_rewards saw, for the token rewards
        self._generation_pass: list[torch.Tensor] | None = None  # hidden states of TRL's pi_old pass

    # -- capturing the body's hidden states -----------------------------------------------------

    def _store_last_hidden_state(self, module, args, output) -> None:
        if self._captured_hidden_states is not None:
            self._captured_hidden_states.append(output.last_hidden_state)

    @contextmanager
    def _capture_hidden_states(self):
        self._captured_hidden_states = captured = []
        try:
            yield captured
        finally:
            self._captured_hidden_states = None

    def _values(self, captured: list[torch.Tensor], num_completion_tokens: int) -> torch.Tensor:
        """V_k of (2) for the captured forward pass(es): (B, T)."""
        hidden = torch.cat([completion_states(h, num_completion_tokens) for h in captured], dim=0)
        if not self.args.value_loss_trains_body:
            hidden = hidden.detach()
        return self.value_head(hidden)

    # -- generation: rewards (1), the judged span and V_old ---------------------------------------

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._rollout = {"inputs": inputs, "completion_ids": completion_ids_list, "rewards_per_func": rewards_per_func}
        return rewards_per_func

    def _generate_and_score_completions(self, inputs):
        self._generation_pass = []
        try:
            batch = super()._generate_and_score_completions(inputs)
            generation_pass = self._generation_pass
        finally:
            self._generation_pass = None
        rollout, self._rollout = self._rollout, None
        texts = self._tokenizer.batch_decode(rollout["completion_ids"], skip_special_tokens=True)
        batch["span_mask"] = self._span_mask(texts, rollout["completion_ids"], batch["completion_mask"])
        batch["token_rewards"] = self._token_rewards(texts, rollout, batch)  # (1)
        if batch.get("old_per_token_logps") is not None:
            # Samples may be used after the weights moved (module docstring): keep V_old, read from
            # TRL's pi_old pass, its first scoring pass of the batch (a reference pass comes after).
            batch["old_values"] = self._values(generation_pass, batch["completion_ids"].size(1)).detach()
        return batch

    def _span_mask(self, texts: list[str], completion_ids: list, completion_mask: torch.Tensor) -> torch.Tensor:
        """(B, T): 1 on the tokens of the spans the rewards judge (taxonomy/spans.py)."""
        if self.judged_spans == ["answer"]:
            return completion_mask.clone()
        mask = torch.zeros_like(completion_mask)
        for b, (text, ids) in enumerate(zip(texts, completion_ids)):
            char_ends = token_char_ends(self._tokenizer, ids)
            for span in self.judged_spans:
                row = token_span_mask(char_ends, *span_chars(text, span))
                mask[b, : len(row)] |= torch.tensor(row, dtype=mask.dtype, device=mask.device)
        return mask * completion_mask

    def _token_rewards(self, texts: list[str], rollout: Mapping[str, Any], batch: Mapping[str, Any]) -> torch.Tensor:
        """r_k of (1) as a (B, T) tensor aligned with ``batch["completion_ids"]``."""
        mode = "train" if self.model.training else "eval"
        completion_ids = rollout["completion_ids"]
        num_rows, width = batch["completion_ids"].shape
        device = batch["completion_ids"].device
        dense = torch.zeros(num_rows, width, device=device)
        if self.token_reward_fn is not None:
            dense = self._dense_rewards(texts, completion_ids, rollout["inputs"], width, device)
        # R(o): TRL's weighted sum of the reward functions the dense term does not pay (gathered
        # over processes: keep ours), paid on the last token of the judged span.
        start = self.accelerator.process_index * num_rows
        per_func = rollout["rewards_per_func"][start : start + num_rows]
        weights = self.sequence_reward_weights.to(per_func.device)
        sequence = torch.nan_to_num((per_func * weights).nansum(dim=1), nan=0.0).to(device)
        terminal = torch.zeros(num_rows, width, device=device)
        last = last_index(batch["span_mask"])
        rows = torch.arange(num_rows, device=device)[last >= 0]
        terminal[rows, last[last >= 0]] = sequence[last >= 0]
        dense_weight = self.args.token_reward_weight * self.dense_reward_weight
        rewards = dense_weight * dense + self.args.terminal_reward_weight * terminal
        self._metrics[mode]["actor_critic/dense_reward_sum"].append(
            self.accelerator.gather(dense.sum(dim=1)).mean().item()
        )
        return rewards * batch["completion_mask"].to(rewards.dtype)

    def _dense_rewards(self, texts, completion_ids, inputs, width, device) -> torch.Tensor:
        out = self.token_reward_fn(texts, [list(ids) for ids in completion_ids], inputs)
        dense = torch.zeros(len(completion_ids), width, device=device)
        if isinstance(out, torch.Tensor):
            if out.ndim != 2 or out.shape[0] != len(completion_ids):
                raise ValueError(
                    f"token_reward_fn returned a tensor of shape {tuple(out.shape)}; expected "
                    f"({len(completion_ids)}, T) with T >= the longest completion"
                )
            cols = min(width, out.shape[1])
            dense[:, :cols] = out[:, :cols].to(device=device, dtype=dense.dtype)
        else:
            out = list(out)
            if len(out) != len(completion_ids):
                raise ValueError(f"token_reward_fn returned {len(out)} rows for {len(completion_ids)} completions")
            for b, (row, ids) in enumerate(zip(out, completion_ids)):
                row = list(row)
                if len(row) != len(ids):
                    raise ValueError(
                        f"token_reward_fn: completion {b} has {len(ids)} tokens but {len(row)} rewards"
                    )
                if row:
                    dense[b, : len(row)] = torch.tensor(row, dtype=dense.dtype, device=device)
        if not torch.isfinite(dense).all():
            logger.warning("token_reward_fn returned non-finite rewards; they count as 0")
            dense = torch.nan_to_num(dense, nan=0.0, posinf=0.0, neginf=0.0)
        return dense

    # -- the loss: (4)-(8) ----------------------------------------------------------------------

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, *args, **kwargs):
        """TRL's scoring forward pass. The critic reads two of them: the loss's own pass (V_theta and
        the advantages) and, at generation, the first pass of the policy (pi_old's, for V_old)."""
        forward = functools.partial(
            super()._get_per_token_logps_and_entropies,
            model, input_ids, attention_mask, logits_to_keep, *args, **kwargs,
        )
        if self._loss_inputs is not None:
            return self._loss_pass(forward, logits_to_keep)
        pi_old_pass = self._generation_pass is not None and not self._generation_pass and model is self.model
        if not pi_old_pass:  # a reference pass, or no batch being generated
            return forward()
        with self._capture_hidden_states() as captured:
            result = forward()
        self._generation_pass.extend(captured)
        return result

    def _loss_pass(self, forward: Callable[[], Any], num_completion_tokens: int):
        """The loss's forward pass; then (2)-(5) fill the batch copy's "advantages" that TRL reads next."""
        loss_inputs, self._loss_inputs = self._loss_inputs, None  # read only the loss's own pass
        span = loss_inputs["span_mask"]
        if not bool(self.value_head.bias_initialised):
            self._initialise_value_bias(loss_inputs["token_rewards"], span)
        with self._capture_hidden_states() as captured:
            result = forward()
        values = self._values(captured, num_completion_tokens)  # (2) V_theta(s_k), with grad
        old_values = loss_inputs.get("old_values")
        if old_values is None:  # aligned regime: the weights have not moved since generation
            old_values = values.detach()
        advantages, returns = gae(
            loss_inputs["token_rewards"], old_values, loss_inputs["completion_mask"], self.args.gamma, self.args.gae_lambda
        )  # (3)-(4)
        if self.args.normalize_advantages:
            advantages = masked_normalize(advantages, span)  # (5) on the judged span
        loss_inputs["advantages"] = advantages * span  # (B, T): TRL's surrogate (6) reads it right after
        loss_inputs["values"], loss_inputs["old_values"], loss_inputs["returns"] = values, old_values, returns
        return result

    def _initialise_value_bias(self, token_rewards: torch.Tensor, span: torch.Tensor) -> None:
        """Start V at the mean return of the first rollout (the Monte-Carlo reward-to-go, averaged
        over the judged tokens of every process), so the first advantages are not the head's noise."""
        _, reward_to_go = gae(token_rewards, torch.zeros_like(token_rewards), span, self.args.gamma, 1.0)
        mean = self.accelerator.gather(masked_mean(reward_to_go, span).reshape(1)).mean()
        self.value_head.initialise_bias(float(mean))
        logger.info("value head: output bias set to the first rollout's mean return %.4f", float(mean))

    def _compute_loss(self, model, inputs):
        loss_inputs = dict(inputs)  # a copy: the buffered batch keeps its own tensors for later iterations
        self._loss_inputs = loss_inputs
        try:
            policy_loss = super()._compute_loss(model, loss_inputs)  # (6) (+ KL / entropy terms)
        finally:
            self._loss_inputs = None
        if "values" not in loss_inputs:
            raise RuntimeError("the policy forward pass did not run through _get_per_token_logps_and_entropies")
        values, old_values, returns = loss_inputs["values"], loss_inputs["old_values"], loss_inputs["returns"]
        span = loss_inputs["span_mask"]
        value_loss = clipped_value_loss(values, old_values, returns, span, self.args.value_clip)  # (7)
        mode = "train" if self.model.training else "eval"
        # TRL divides its policy term by the accumulation steps (HF's own scaling is off): do the same.
        normalizer = self.current_gradient_accumulation_steps if mode == "train" else 1.0
        self._log_critic(mode, value_loss, values, old_values, returns, span)
        judged_share = span.float().sum() / loss_inputs["completion_mask"].float().sum().clamp(min=1.0)
        self._metrics[mode]["actor_critic/judged_token_share"].append(self.accelerator.gather(judged_share).mean().item())
        if mode == "train" and self.state.global_step < self.args.critic_warmup_steps:
            policy_loss = policy_loss.detach() * 0.0  # critic warm-up: the policy waits for a sane critic
        return policy_loss + self.args.value_loss_coef * value_loss / normalizer  # (8)

    def _log_critic(self, mode, value_loss, values, old_values, returns, span) -> None:
        gather = self.accelerator.gather
        metrics = self._metrics[mode]
        metrics["actor_critic/value_loss"].append(gather(value_loss.detach()).mean().item())
        metrics["actor_critic/value_mean"].append(gather(masked_mean(values.detach(), span)).mean().item())
        metrics["actor_critic/return_mean"].append(gather(masked_mean(returns, span)).mean().item())
        metrics["actor_critic/explained_variance"].append(explained_variance(old_values, returns, span))
        if self.args.value_clip is not None:
            clipped = ((values.detach() - old_values).abs() > self.args.value_clip).float()
            metrics["actor_critic/value_clip_fraction"].append(gather(masked_mean(clipped, span)).mean().item())

    # -- optimisation: the value head's own param group, gradient sync and clipping --------------

    def create_optimizer(self, model=None):
        optimizer = super().create_optimizer(model)
        head_params = list(self.value_head.parameters())
        known = {id(p) for group in optimizer.param_groups for p in group["params"]}
        if not any(id(p) in known for p in head_params):  # also when the caller passed its own optimizer
            optimizer.add_param_group(
                {"params": head_params, "lr": self.args.value_learning_rate, "weight_decay": self.args.weight_decay}
            )
        return optimizer

    def training_step(self, model, inputs, num_items_in_batch):
        loss = super().training_step(model, inputs, num_items_in_batch)
        # DDP averages the policy's gradients across processes; the head is outside DDP, so average
        # its accumulated gradients here, once per optimizer step.
        if self.accelerator.num_processes > 1 and self.accelerator.sync_gradients:
            for p in self.value_head.parameters():
                grad = p.grad if p.grad is not None else torch.zeros_like(p)
                p.grad = self.accelerator.reduce(grad, reduction="mean")
        return loss

    def _clip_grad_norm(self, model):
        grad_norm = super()._clip_grad_norm(model)  # also unscales fp16 gradients, the head's included
        head_norm = torch.nn.utils.clip_grad_norm_(self.value_head.parameters(), self.args.max_grad_norm)
        self._metrics["train"]["actor_critic/value_grad_norm"].append(float(head_norm))
        return grad_norm

    # -- saving and resuming --------------------------------------------------------------------

    def save_value_head(self, output_dir: str | os.PathLike) -> str:
        """Write ``value_head.safetensors`` into ``output_dir`` (the model folder stays pure)."""
        os.makedirs(output_dir, exist_ok=True)
        path = os.path.join(output_dir, VALUE_HEAD_FILE)
        state = {k: v.detach().cpu().contiguous() for k, v in self.value_head.state_dict().items()}
        save_file(state, path, metadata={"format": "pt", "hidden_size": str(self.value_head.net[0].in_features)})
        return path

    def load_value_head(self, folder: str | os.PathLike) -> bool:
        """Restore the head from ``folder/value_head.safetensors``; False (and a warning) when absent."""
        path = os.path.join(folder, VALUE_HEAD_FILE)
        if not os.path.isfile(path):
            logger.warning("%s has no %s: the value head starts fresh", folder, VALUE_HEAD_FILE)
            return False
        try:
            state = load_file(path, device=str(next(self.value_head.parameters()).device))
        except Exception as err:  # noqa: BLE001 - safetensors raises its own error types on bad files
            raise ValueError(f"{path}: cannot read the value head ({type(err).__name__}: {err})") from err
        try:
            self.value_head.load_state_dict(state)
        except RuntimeError as err:
            raise ValueError(
                f"{path}: value head does not fit this model/config (value_head_hidden_size="
                f"{self.args.value_head_hidden_size}): {err}"
            ) from err
        return True

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        super().save_model(output_dir, _internal_call)  # checkpoints come through here too
        if self.args.should_save:
            self.save_value_head(output_dir if output_dir is not None else self.args.output_dir)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        self.load_value_head(resume_from_checkpoint)

    def _load_best_model(self):
        super()._load_best_model()
        if self.state.best_model_checkpoint is not None:
            self.load_value_head(self.state.best_model_checkpoint)


# ---------------------------------------------------------------------------------------------
# Dense CLIP rewards (R1 increments) on the policy's tokens


def token_char_ends(tokenizer: Any, token_ids: Sequence[int]) -> list[int]:
    """For each token, the length of the decoded text of the tokens up to and including it.

    Decoding prefixes (not single tokens) keeps multi-byte characters split across byte-level BPE
    tokens correct; the last entry is len(decode(token_ids)).
    """
    ids = list(token_ids)
    if not ids:
        return []
    prefixes = tokenizer.batch_decode([ids[: k + 1] for k in range(len(ids))], skip_special_tokens=True)
    return [len(text) for text in prefixes]


def place_on_tokens(char_ends: Sequence[int], reward_ends: Sequence[int], rewards: Sequence[float]) -> list[float]:
    """Put each reward on the first token whose text reaches its character offset (0 elsewhere)."""
    out = [0.0] * len(char_ends)
    if not out:
        return out
    k = 0
    for end, reward in sorted(zip(reward_ends, rewards)):
        while k < len(char_ends) - 1 and char_ends[k] < end:
            k += 1
        out[k] += float(reward)
    return out


def clip_token_reward_fn(tokenizer: Any, granularity: str = "word", **clip_params: Any) -> TokenRewardFn:
    """A :data:`TokenRewardFn` paying R1 increments (rewards/clip_alignment.py) on the policy's tokens.

    r^tok_k = R1(T_k) - R1(T_{k-1}), T_k the description prefix that ends with token k
    (``granularity="token"``) or with the word token k finishes (``"word"``); 0 on other tokens.
    The increments sum to R1(description) - R1(""). ``clip_params`` are clip_alignment_reward's
    keywords (model_name, pretrained, device, floor, shift, scale, cache_size, frames_column,
    max_description_chars), e.g. the ``keywords`` of its ConfiguredReward. When the description
    is not verbatim in the completion (JSON escapes), its total is paid on the last token.
    """
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    defaults = {
        name: p.default
        for name, p in inspect.signature(r1.clip_alignment_reward).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }
    unknown = sorted(set(clip_params) - set(defaults))
    if unknown:
        raise ValueError(
            f"clip_token_reward_fn: unknown clip_alignment parameter(s) {unknown}; known: {sorted(defaults)}"
        )
    params = {**defaults, **clip_params}
    normalisation = r1.Normalisation(params["floor"], params["shift"], params["scale"])

    def token_rewards(texts: list[str], completion_ids: list[list[int]], inputs: list[dict]) -> list[list[float]]:
        scorer = r1.get_scorer(params["model_name"], params["pretrained"], params["device"], params["cache_size"])
        columns = {key: [row.get(key) for row in inputs] for key in inputs[0]} if inputs else {}
        videos = r1.batch_video_embeddings(scorer, columns, len(texts), params["frames_column"])
        char_ends = [token_char_ends(tokenizer, ids) for ids in completion_ids]
        ends = None
        if granularity == "token":  # the description-relative offsets where each policy token ends
            ends = []
            for text, token_ends in zip(texts, char_ends):
                start = locate_description(text, r1.description_of(text, params["max_description_chars"]))
                ends.append([e - start for e in token_ends] if start >= 0 else [])
        steps = r1.incremental_rewards(
            videos, texts, scorer, unit="word", ends=ends, normalisation=normalisation,
            max_description_chars=params["max_description_chars"],
        )
        out = []
        for step, token_ends in zip(steps, char_ends):
            if not token_ends:
                out.append([])
            elif step.completion_ends is not None:
                out.append(place_on_tokens(token_ends, step.completion_ends, step.rewards))
            else:
                out.append(place_on_tokens(token_ends, [token_ends[-1]], [step.total]))
        return out

    token_rewards.span = reward_span(r1.clip_alignment_reward)  # R1's increments judge what R1 judges
    token_rewards.pays = r1.NAME  # and are R1, paid token by token instead of at the end
    return token_rewards


# ---------------------------------------------------------------------------------------------
# The algorithm switch


def build_rl_trainer(
    algorithm: str,
    *,
    model: Any,
    args: GRPOConfig,
    reward_funcs: Any,
    train_dataset: Any,
    eval_dataset: Any = None,
    processing_class: Any = None,
    peft_config: Any = None,
    callbacks: Any = None,
    optimizers: tuple = (None, None),
    token_reward_fn: TokenRewardFn | None = None,
    clip_token_reward_params: Mapping[str, Any] | None = None,
    reward_control: bool = False,
) -> GRPOTrainer:
    """The stage-1 trainer: ``"grpo"`` (plain GRPOTrainer, sequence reward, group baseline) or
    ``"actor_critic"`` (:class:`ActorCriticTrainer`, same sequence reward paid on the last token,
    plus dense rewards: ``token_reward_fn``, or CLIP increments built from
    ``clip_token_reward_params`` at ``args.token_reward_granularity``)."""
    common = dict(
        model=model, reward_funcs=reward_funcs, args=args, train_dataset=train_dataset,
        eval_dataset=eval_dataset, processing_class=processing_class, peft_config=peft_config,
        callbacks=callbacks, optimizers=optimizers,
    )
    if algorithm == "grpo":
        if token_reward_fn is not None or clip_token_reward_params is not None:
            logger.info("algorithm grpo: dense token rewards are not used (GRPO scores whole completions)")
        return GRPOTrainer(**common)
    if algorithm != "actor_critic":
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    if not isinstance(args, ActorCriticConfig):
        raise TypeError(f"algorithm actor_critic needs an ActorCriticConfig, got {type(args).__name__}")
    if token_reward_fn is not None and clip_token_reward_params is not None:
        raise ValueError("pass token_reward_fn or clip_token_reward_params, not both")
    if clip_token_reward_params is not None:
        if processing_class is None:
            raise ValueError("clip_token_reward_params needs processing_class (its tokenizer decodes the tokens)")
        tokenizer = getattr(processing_class, "tokenizer", processing_class)
        token_reward_fn = clip_token_reward_fn(tokenizer, args.token_reward_granularity, **clip_token_reward_params)
    if reward_control and token_reward_fn is not None:  # the dense increments too (recipes/reward_control.py)
        token_reward_fn = token_rewards_against_other_clips(token_reward_fn, args.num_generations)
    return ActorCriticTrainer(**common, token_reward_fn=token_reward_fn)
