"""Run a stage's recipe unchanged under several processes and record, per process, what data
parallelism must keep in agreement. A helper that tests/test_distributed.py launches; not a test.

    accelerate launch --config_file recipes/accelerate/ddp.yaml --num_processes 2 \
        tests/distributed_check.py --stage stage2 --record DIR \
        --config recipes/stage2/stage2_demo.yaml --use_cpu true [--key value ...]

Everything after the helper's own flags goes to ``recipes.<stage>.<stage>.main`` as is. The only
changes:
- the stage's trainer (GRPOTrainer for stage2/stage3, the actor-critic for stage1) is subclassed to
  record, at every generation step, the rewards this process computed for its own completions (by
  calling the reward functions again: they are pure) and the rewards TRL gathered from every
  process (what its group advantages are computed from), plus the clip ids it trained on; and,
  after training, the policy's weights (and the actor-critic's value head);
- calls of ``save_pretrained`` on a model are recorded with the rank that made them;
- a reward ``completion_digest`` is registered (a hash of the completion text mapped to [0, 1)), so
  rewards differ between completions even for an untrained model whose answers all score 0 on R2:
  a comparison of all-zero rewards would prove nothing.

Writes ``DIR/rank<k>.json`` (rank, world size, distributed type, steps, saves) and
``DIR/rank<k>.safetensors`` (weights; the value head's under ``value_head.``).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import sys
from pathlib import Path

from rewards.registry import completion_text, register_reward

DIGEST_REWARD = "completion_digest"
DIGEST_BYTES = 8  # of the SHA-256, read as an integer and scaled to [0, 1)


@register_reward(DIGEST_REWARD)
def completion_digest(completions, **_columns) -> list[float]:
    """A deterministic, text-dependent reward in [0, 1): the same text scores the same on every process."""
    out = []
    for completion in completions:
        digest = hashlib.sha256(completion_text(completion).encode("utf-8")).digest()[:DIGEST_BYTES]
        out.append(int.from_bytes(digest, "big") / 2 ** (8 * DIGEST_BYTES))
    return out


VALUE_HEAD_PREFIX = "value_head."
RECORD: dict = {"steps": [], "saves": []}  # this process's record, written when the stage is done


class RecordingMixin:
    """Put before a GRPOTrainer (sub)class: records rewards per generation step and the final weights."""

    record_dir: Path

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        gathered = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        columns = {key: [row[key] for row in inputs] for key in inputs[0] if key not in ("prompt", "completion")}
        local = [
            func(prompts=prompts, completions=completions, completion_ids=completion_ids_list, **columns,
                 trainer_state=self.state, log_extra=lambda *a, **k: None, log_metric=lambda *a, **k: None)
            for func in self.reward_funcs
        ]
        RECORD["steps"].append({
            "ids": [row["id"] for row in inputs],
            "local": [list(map(float, row)) for row in zip(*local)],  # (completions, reward funcs)
            "gathered": gathered.detach().cpu().tolist(),
        })
        return gathered

    def train(self, *args, **kwargs):
        from safetensors.torch import save_file

        output = super().train(*args, **kwargs)
        RECORD.update(rank=self.accelerator.process_index, world_size=self.accelerator.num_processes,
                      distributed_type=str(self.accelerator.distributed_type))
        model = self.accelerator.unwrap_model(self.model)
        # Under FSDP2 the state dict holds shards (DTensors): gather each whole (every rank takes part).
        state = {k: (v.full_tensor() if hasattr(v, "full_tensor") else v).detach().cpu().contiguous()
                 for k, v in model.state_dict().items()}
        if hasattr(self, "value_head"):
            state.update({VALUE_HEAD_PREFIX + k: v.detach().cpu().contiguous()
                          for k, v in self.value_head.state_dict().items()})
        save_file(state, str(self.record_dir / f"rank{RECORD['rank']}.safetensors"))
        return output


def recording(trainer_cls: type, record_dir: Path) -> type:
    return type(f"Recording{trainer_cls.__name__}", (RecordingMixin, trainer_cls), {"record_dir": record_dir})


def record_saves() -> None:
    """Note every save_pretrained call on a model with the rank that made it."""
    from transformers import PreTrainedModel

    original = PreTrainedModel.save_pretrained

    def save_pretrained(self, save_directory, *args, **kwargs):
        RECORD["saves"].append({"rank": int(os.environ.get("RANK", "0")), "path": str(save_directory)})
        return original(self, save_directory, *args, **kwargs)

    PreTrainedModel.save_pretrained = save_pretrained


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="tests/distributed_check.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", choices=("stage1", "stage2", "stage3"), required=True)
    parser.add_argument("--record", type=Path, required=True, help="folder for rank<k>.json and rank<k>.safetensors")
    args, recipe_argv = parser.parse_known_args(argv)
    args.record.mkdir(parents=True, exist_ok=True)
    record_saves()
    if args.stage == "stage1":  # build_rl_trainer looks the class up when it is called
        from recipes import actor_critic

        actor_critic.ActorCriticTrainer = recording(actor_critic.ActorCriticTrainer, args.record)
    from trl import GRPOTrainer

    # stage2/stage3 (and stage1 with algorithm: grpo) get the default trainer class from run_rl_stage
    module = importlib.import_module(f"recipes.{args.stage}.{args.stage}")
    run_rl_stage = module.run_rl_stage

    def run_recorded(recipe, training_args, model_args, trainer_cls=None, **kwargs):
        return run_rl_stage(recipe, training_args, model_args,
                            trainer_cls=trainer_cls or recording(GRPOTrainer, args.record), **kwargs)

    module.run_rl_stage = run_recorded
    module.main(recipe_argv)
    rank = RECORD.get("rank", int(os.environ.get("RANK", "0")))
    (args.record / f"rank{rank}.json").write_text(json.dumps(RECORD))


if __name__ == "__main__":
    main(sys.argv[1:])
