"""Reward callables for TRL's GRPOTrainer (R1 clip_alignment, R2 action_reasoning, R3 structure).

Look rewards up by name through the registry (``build_reward``, ``resolve_rewards``); the reward
functions themselves live in their modules (``rewards.action_reasoning.action_reasoning_reward``,
``rewards.structure.structure_reward``, ``rewards.clip_alignment.clip_alignment_reward``) and can be
given to ``trl grpo`` by dotted path.
"""

from rewards.registry import (
    ConfiguredReward,
    build_reward,
    completion_text,
    get_reward,
    register_reward,
    registered_rewards,
    resolve_rewards,
    reward_parameters,
)

__all__ = [
    "ConfiguredReward",
    "build_reward",
    "completion_text",
    "get_reward",
    "register_reward",
    "registered_rewards",
    "resolve_rewards",
    "reward_parameters",
]
