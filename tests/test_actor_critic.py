"""The stage-1 actor-critic (recipes/actor_critic.py): its equations and its plumbing inside TRL.

Trainer tests use the tiny SmolVLM (``tiny_vlm_dir``), 2 random 48x64 frames per clip, 4
completions of <= 8 tokens, on CPU in fp32.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from recipes import actor_critic as ac
from recipes import ppo_math as pm

NUM_GENERATIONS = 4
MAX_COMPLETION_LENGTH = 8
FRAMES_PER_CLIP = 2


# ---------------------------------------------------------------------------------------------
# The equations


def test_gae_matches_a_hand_computed_example_with_padding():
    gamma, lam = 0.9, 0.8
    # Row 0: 3 real tokens then padding; row 1: 4 real tokens (full width).
    rewards = torch.tensor([[1.0, 0.0, 2.0, 5.0], [0.0, 1.0, 0.0, 1.0]])  # the 5.0 sits on padding
    values = torch.tensor([[0.5, 1.0, 1.5, 9.0], [1.0, 1.0, 1.0, 1.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    advantages, returns = pm.gae(rewards, values, mask, gamma, lam)

    # Row 0 by hand: V after the last real token is 0 (terminal); padding is ignored.
    d2 = 2.0 + gamma * 0.0 - 1.5  # 0.5
    d1 = 0.0 + gamma * 1.5 - 1.0  # 0.35
    d0 = 1.0 + gamma * 1.0 - 0.5  # 1.4
    a2 = d2
    a1 = d1 + gamma * lam * a2
    a0 = d0 + gamma * lam * a1
    # Row 1 by hand.
    e3 = 1.0 - 1.0
    e2 = 0.0 + gamma * 1.0 - 1.0
    e1 = 1.0 + gamma * 1.0 - 1.0
    e0 = 0.0 + gamma * 1.0 - 1.0
    b3 = e3
    b2 = e2 + gamma * lam * b3
    b1 = e1 + gamma * lam * b2
    b0 = e0 + gamma * lam * b1
    expected = torch.tensor([[a0, a1, a2, 0.0], [b0, b1, b2, b3]])
    torch.testing.assert_close(advantages, expected)
    torch.testing.assert_close(returns, (expected + values) * mask)


def test_gae_with_gamma_and_lambda_one_is_reward_to_go_minus_value():
    rewards = torch.tensor([[1.0, 2.0, 3.0, 0.0]])
    values = torch.tensor([[0.5, -1.0, 2.0, 7.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    advantages, returns = pm.gae(rewards, values, mask, 1.0, 1.0)
    torch.testing.assert_close(returns, torch.tensor([[6.0, 5.0, 3.0, 0.0]]))  # Monte Carlo returns
    torch.testing.assert_close(advantages, torch.tensor([[5.5, 6.0, 1.0, 0.0]]))


def test_clipped_value_loss_takes_the_worse_of_clipped_and_unclipped():
    old = torch.tensor([[0.0, 0.0, 0.0]])
    new = torch.tensor([[1.0, -1.0, 0.1]])
    target = torch.tensor([[1.0, 1.0, 0.0]])
    mask = torch.tensor([[1, 1, 0]])
    # token 0: unclipped 0, clipped (0.2 - 1)^2 = 0.64 -> 0.64; token 1: unclipped 4, clipped 1.44 -> 4
    loss = pm.clipped_value_loss(new, old, target, mask, clip=0.2)
    assert loss.item() == pytest.approx(0.5 * (0.64 + 4.0) / 2)
    assert pm.clipped_value_loss(new, old, target, mask, clip=None).item() == pytest.approx(0.5 * (0 + 4.0) / 2)


def test_masked_normalize_ignores_padding():
    x = torch.tensor([[1.0, 3.0, 100.0]])
    mask = torch.tensor([[1, 1, 0]])
    torch.testing.assert_close(pm.masked_normalize(x, mask), torch.tensor([[-1.0, 1.0, 0.0]]), atol=1e-6, rtol=0)


def test_completion_states_are_the_positions_that_predict_each_token():
    hidden = torch.arange(10.0).view(1, 10, 1)  # position j holds j
    # 3 completion tokens at positions 7, 8, 9 are predicted from positions 6, 7, 8
    assert pm.completion_states(hidden, 3).flatten().tolist() == [6.0, 7.0, 8.0]


def test_place_on_tokens_puts_each_reward_on_the_token_reaching_its_offset():
    char_ends = [2, 5, 9, 12]
    assert ac.place_on_tokens(char_ends, [5, 7, 12], [1.0, 2.0, 3.0]) == [0.0, 1.0, 2.0, 3.0]
    assert ac.place_on_tokens([], [3], [1.0]) == []


def test_config_rejects_bad_values_naming_the_key(tmp_path):
    with pytest.raises(ValueError, match="gae_lambda"):
        _config(tmp_path, gae_lambda=1.5)
    with pytest.raises(ValueError, match="token_reward_granularity"):
        _config(tmp_path, token_reward_granularity="sentence")


# ---------------------------------------------------------------------------------------------
# The trainer on the tiny model


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The tiny model is too small for intra-op threads; on a shared CPU they only spin. Restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _config(tmp_path, **overrides):
    values = dict(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=NUM_GENERATIONS,
        num_generations=NUM_GENERATIONS,
        max_completion_length=MAX_COMPLETION_LENGTH,
        max_steps=1,
        learning_rate=1e-3,
        value_learning_rate=1e-2,
        report_to="none",
        bf16=False,
        gradient_checkpointing=False,
        use_cpu=True,
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        seed=0,
    )
    values.update(overrides)
    return ac.ActorCriticConfig(**values)


@pytest.fixture(scope="module")
def clips():
    from datasets import Dataset

    rng = np.random.default_rng(0)
    rows = [
        {
            "id": f"clip-{i}",
            "prompt": [{"role": "user", "content": [{"type": "image"}] * FRAMES_PER_CLIP}],
            "images": [
                Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)) for _ in range(FRAMES_PER_CLIP)
            ],
        }
        for i in range(4)
    ]
    return Dataset.from_list(rows)


@pytest.fixture(scope="module")
def processor(tiny_vlm_dir):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_vlm_dir)


SEQUENCE_REWARD = 10.0
# Keys of a generated batch that TRL's forward takes (the list TRL's _compute_loss passes on).
FORWARD_KEYS = (
    "pixel_values", "image_grid_thw", "num_images", "pixel_attention_mask", "spatial_shapes", "num_tiles",
    "image_sizes", "token_type_ids", "mm_token_type_ids", "image_position_ids",
)


def constant_reward(completions, **kwargs):
    return [SEQUENCE_REWARD] * len(completions)


def even_token_reward(texts, completion_ids, inputs):
    """+1 on every token with an even id: a dense reward whose placement a test can check."""
    return [[1.0 if t % 2 == 0 else 0.0 for t in ids] for ids in completion_ids]


def _trainer(tiny_vlm_dir, processor, clips, config, token_reward_fn=even_token_reward):
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(tiny_vlm_dir)
    return ac.ActorCriticTrainer(
        model=model,
        reward_funcs=constant_reward,
        args=config,
        train_dataset=clips,
        processing_class=processor,
        token_reward_fn=token_reward_fn,
    )


def _generation_batch(clips):
    """What TRL's sampler hands _prepare_inputs: each clip repeated num_generations times."""
    return [clips[0]] * NUM_GENERATIONS


def _forward_args(batch):
    input_ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    attention_mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    kwargs = {key: batch.get(key) for key in FORWARD_KEYS}
    return input_ids, attention_mask, batch["completion_ids"].size(1), kwargs


def test_token_rewards_travel_with_their_completions_through_trl_shuffling(tiny_vlm_dir, processor, clips, tmp_path):
    trainer = _trainer(tiny_vlm_dir, processor, clips, _config(tmp_path, terminal_reward_weight=0.5))
    trainer.model.train()
    batch = trainer._prepare_inputs(_generation_batch(clips))  # generate, score, shuffle, split
    ids, mask = batch["completion_ids"], batch["completion_mask"]
    assert batch["token_rewards"].shape == ids.shape
    expected = (ids % 2 == 0).float() * mask
    lengths = mask.sum(dim=1)
    for row, length in enumerate(lengths.tolist()):
        expected[row, length - 1] += 0.5 * SEQUENCE_REWARD  # (1): the sequence reward on the last token
    torch.testing.assert_close(batch["token_rewards"], expected)
    assert "old_values" not in batch  # aligned regime: V_old is read at loss time


def paid_reward(completions, **kwargs):
    """A sequence reward the dense term pays as its increments (as stage 1's R1)."""
    return [100.0] * len(completions)


def test_the_reward_paid_as_increments_carries_its_weight_and_is_not_paid_again(
    tiny_vlm_dir, processor, clips, tmp_path
):
    from transformers import AutoModelForImageTextToText

    def increments(texts, completion_ids, inputs):
        return even_token_reward(texts, completion_ids, inputs)

    increments.pays = "paid_reward"
    config = _config(tmp_path, terminal_reward_weight=1.0, reward_weights=[0.5, 1.0])
    trainer = ac.ActorCriticTrainer(
        model=AutoModelForImageTextToText.from_pretrained(tiny_vlm_dir), reward_funcs=[paid_reward, constant_reward],
        args=config, train_dataset=clips, processing_class=processor, token_reward_fn=increments,
    )
    trainer.model.train()
    batch = trainer._prepare_inputs(_generation_batch(clips))
    ids, mask = batch["completion_ids"], batch["completion_mask"]
    expected = 0.5 * (ids % 2 == 0).float() * mask  # (1): w_1 * r^tok
    for row, length in enumerate(mask.sum(dim=1).tolist()):
        expected[row, length - 1] += SEQUENCE_REWARD  # R(o): the other reward only
    torch.testing.assert_close(batch["token_rewards"], expected)


def test_hidden_state_hook_through_lm_head_reproduces_trl_log_probs(tiny_vlm_dir, processor, clips, tmp_path):
    from trl import GRPOTrainer

    trainer = _trainer(tiny_vlm_dir, processor, clips, _config(tmp_path))
    batch = trainer._generate_and_score_completions(_generation_batch(clips))
    input_ids, attention_mask, num_tokens, kwargs = _forward_args(batch)
    with torch.no_grad(), trainer._capture_hidden_states() as captured:
        logps, _, _ = GRPOTrainer._get_per_token_logps_and_entropies(
            trainer, trainer.model, input_ids, attention_mask, num_tokens, **kwargs
        )
    assert len(captured) == 1
    states = pm.completion_states(captured[0], num_tokens)
    with torch.no_grad():
        logits = trainer.model.lm_head(states) / trainer.temperature
    ours = torch.log_softmax(logits.float(), dim=-1).gather(-1, batch["completion_ids"].unsqueeze(-1)).squeeze(-1)
    mask = batch["completion_mask"].bool()
    torch.testing.assert_close(ours[mask], logps[mask], atol=1e-5, rtol=1e-5)


def test_value_head_gets_gradient_and_gae_advantages_reach_trl_loss(
    tiny_vlm_dir, processor, clips, tmp_path, monkeypatch
):
    from trl import GRPOTrainer

    config = _config(tmp_path, gamma=1.0, gae_lambda=1.0, normalize_advantages=False, terminal_reward_weight=0.0)
    trainer = _trainer(tiny_vlm_dir, processor, clips, config)
    trainer.model.train()
    batch = trainer._prepare_inputs(_generation_batch(clips))
    # With V = 0 everywhere, (3)-(4) at gamma = lambda = 1 give the reward-to-go.
    torch.nn.init.zeros_(trainer.value_head.net[2].weight)
    trainer.value_head.initialise_bias(0.0)
    seen = {}
    original = GRPOTrainer._compute_loss

    def spy(self, model, inputs):
        loss = original(self, model, inputs)
        seen["advantages"] = inputs["advantages"]  # what TRL's surrogate used
        return loss

    monkeypatch.setattr(GRPOTrainer, "_compute_loss", spy)
    trainer.current_gradient_accumulation_steps = config.gradient_accumulation_steps  # set by the train loop
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()

    mask = batch["completion_mask"]
    reward_to_go = batch["token_rewards"].flip(1).cumsum(1).flip(1) * mask
    assert seen["advantages"].shape == mask.shape
    torch.testing.assert_close(seen["advantages"], reward_to_go)
    head_grads = [p.grad for p in trainer.value_head.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in head_grads)
    assert trainer.value_head.net[2].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("trains_body", [False, True])
def test_value_loss_reaches_the_body_only_when_asked(tiny_vlm_dir, processor, clips, tmp_path, trains_body):
    from trl import GRPOTrainer

    trainer = _trainer(tiny_vlm_dir, processor, clips, _config(tmp_path, value_loss_trains_body=trains_body))
    batch = trainer._generate_and_score_completions(_generation_batch(clips))
    input_ids, attention_mask, num_tokens, kwargs = _forward_args(batch)
    with trainer._capture_hidden_states() as captured:
        GRPOTrainer._get_per_token_logps_and_entropies(
            trainer, trainer.model, input_ids, attention_mask, num_tokens, **kwargs
        )
    trainer._values(captured, num_tokens).sum().backward()  # the critic's output alone
    body_grads = [p.grad for p in ac.policy_backbone(trainer.model).parameters() if p.requires_grad]
    reached = any(g is not None and g.abs().sum() > 0 for g in body_grads)
    assert reached is trains_body


@pytest.fixture(scope="module")
def trained(tiny_vlm_dir, processor, clips, tmp_path_factory):
    """One actor-critic step with a checkpoint after it, and the parameters from before it."""
    config = _config(tmp_path_factory.mktemp("trained"), save_strategy="steps", save_steps=1)
    trainer = _trainer(tiny_vlm_dir, processor, clips, config)
    policy_before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    head_before = {n: p.detach().clone() for n, p in trainer.value_head.named_parameters()}
    trainer.train()
    return trainer, policy_before, head_before


def test_one_step_changes_policy_and_value_head(trained):
    trainer, policy_before, head_before = trained
    assert trainer.state.global_step == 1
    policy_changed = [
        n for n, p in trainer.model.named_parameters() if n in policy_before and not torch.equal(p, policy_before[n])
    ]
    head_changed = [n for n, p in trainer.value_head.named_parameters() if not torch.equal(p, head_before[n])]
    assert any("lm_head" in n or "text_model" in n for n in policy_changed)
    assert set(head_changed) == set(head_before)
    head_ids = {id(p) for p in trainer.value_head.parameters()}
    head_groups = [g for g in trainer.optimizer.param_groups if {id(p) for p in g["params"]} & head_ids]
    assert len(head_groups) == 1 and {id(p) for p in head_groups[0]["params"]} == head_ids
    assert head_groups[0]["initial_lr"] == trainer.args.value_learning_rate != trainer.args.learning_rate
    log = trainer.state.log_history[0]
    assert "actor_critic/value_loss" in log and "actor_critic/explained_variance" in log


def test_saved_model_folder_loads_clean_with_the_value_head_beside_it(trained, tmp_path):
    from safetensors.torch import load_file
    from transformers import AutoModelForImageTextToText

    trainer = trained[0]
    out = tmp_path / "final"
    trainer.save_model(str(out))
    reloaded, info = AutoModelForImageTextToText.from_pretrained(out, output_loading_info=True)
    assert not info["unexpected_keys"] and not info["missing_keys"]
    torch.testing.assert_close(reloaded.lm_head.weight, trainer.model.lm_head.weight)
    saved_head = load_file(out / ac.VALUE_HEAD_FILE)
    assert set(saved_head) == set(trainer.value_head.state_dict())
    for name, value in trainer.value_head.state_dict().items():
        torch.testing.assert_close(saved_head[name], value)


def test_resume_from_checkpoint_restores_the_value_head(trained, tiny_vlm_dir, processor, clips, tmp_path):
    from transformers import TrainerCallback

    first = trained[0]
    checkpoint = f"{first.args.output_dir}/checkpoint-1"
    config = _config(tmp_path, max_steps=2)
    second = _trainer(tiny_vlm_dir, processor, clips, config)
    with torch.no_grad():
        for p in second.value_head.parameters():
            p.fill_(0.123)
    at_start = {}

    class HeadAtTrainBegin(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):  # after the checkpoint is loaded
            at_start.update({n: v.detach().clone() for n, v in second.value_head.state_dict().items()})

    second.add_callback(HeadAtTrainBegin())
    second.train(resume_from_checkpoint=checkpoint)  # also loads the optimizer with the head's param group
    assert second.state.global_step == 2
    for name, value in at_start.items():
        torch.testing.assert_close(value, first.value_head.state_dict()[name])


def test_a_corrupt_or_mismatched_value_head_file_is_an_error_naming_it(trained, tmp_path):
    from safetensors.torch import save_file

    trainer = trained[0]
    (tmp_path / ac.VALUE_HEAD_FILE).write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match=ac.VALUE_HEAD_FILE):
        trainer.load_value_head(tmp_path)
    save_file({"net.0.weight": torch.zeros(3, 3)}, tmp_path / ac.VALUE_HEAD_FILE)
    with pytest.raises(ValueError, match="value_head_hidden_size"):
        trainer.load_value_head(tmp_path)
    assert trainer.load_value_head(tmp_path / "elsewhere") is False  # absent: warned, head kept


def test_misaligned_generation_keeps_generation_time_values(tiny_vlm_dir, processor, clips, tmp_path):
    # steps_per_generation=2 > gradient_accumulation_steps=1: the second half of a generated batch is
    # used after an optimizer step, so TRL keeps pi_old and the trainer keeps V_old.
    config = _config(tmp_path, steps_per_generation=2, per_device_train_batch_size=NUM_GENERATIONS // 2)
    trainer = _trainer(tiny_vlm_dir, processor, clips, config)
    trainer.model.train()
    batch = trainer._prepare_inputs(_generation_batch(clips))
    assert batch["old_values"].shape == batch["completion_ids"].shape
    input_ids, attention_mask, num_tokens, kwargs = _forward_args(batch)
    with torch.no_grad(), trainer._capture_hidden_states() as captured:
        trainer._get_per_token_logps_and_entropies(trainer.model, input_ids, attention_mask, num_tokens, **kwargs)
    values = trainer._values(captured, num_tokens)
    mask = batch["completion_mask"].bool()
    torch.testing.assert_close(batch["old_values"][mask], values[mask], atol=1e-5, rtol=1e-5)


def test_build_rl_trainer_switches_algorithm(tiny_vlm_dir, processor, clips, tmp_path):
    from transformers import AutoModelForImageTextToText
    from trl import GRPOTrainer

    common = dict(
        model=AutoModelForImageTextToText.from_pretrained(tiny_vlm_dir),
        args=_config(tmp_path),
        reward_funcs=constant_reward,
        train_dataset=clips,
        processing_class=processor,
    )
    grpo = ac.build_rl_trainer("grpo", **common)
    assert type(grpo) is GRPOTrainer
    with pytest.raises(ValueError, match="algorithm"):
        ac.build_rl_trainer("ppo", **common)


# ---------------------------------------------------------------------------------------------
# Dense CLIP rewards on the policy's tokens


@pytest.mark.parametrize("granularity", ["token", "word"])
def test_clip_token_rewards_sum_to_r1_and_sit_on_description_tokens(processor, clips, tiny_clip, granularity):
    from rewards.clip_alignment import batch_video_embeddings, clip_alignment_reward, get_scorer
    from taxonomy.answer import format_answer

    tokenizer = processor.tokenizer
    description = "a red car stops ahead"
    texts = [" " + format_answer(description, ["stop"], []), " no description here"]
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    inputs = [dict(clips[0]), dict(clips[1])]
    params = dict(model_name=tiny_clip, pretrained=None, device="cpu")
    reward_fn = ac.clip_token_reward_fn(tokenizer, granularity, **params)
    rewards = reward_fn([tokenizer.decode(i, skip_special_tokens=True) for i in ids], ids, inputs)

    assert [len(r) for r in rewards] == [len(i) for i in ids]
    assert reward_fn.span == "description"  # the trainer reads the dense rewards' span from here
    columns = {key: [row[key] for row in inputs] for key in inputs[0]}
    full = clip_alignment_reward([texts[0]], **params, **{k: v[:1] for k, v in columns.items()})[0]
    scorer = get_scorer(tiny_clip, None, "cpu")
    empty = scorer.empty_text_cosines(batch_video_embeddings(scorer, columns, 2))[0]  # R1(I, ""), not the floor
    assert empty != clip_alignment_reward([""], **params, **{k: v[:1] for k, v in columns.items()})[0]
    assert sum(rewards[0]) == pytest.approx(full - max(empty, 0.0), abs=1e-5)
    # Rewards sit on tokens whose text ends inside the description span, never elsewhere.
    ends = ac.token_char_ends(tokenizer, ids[0])
    start = texts[0].index(description)
    paid = [k for k, r in enumerate(rewards[0]) if r != 0.0]
    end = start + len(description)
    assert paid and all(ends[k] > start and (k == 0 or ends[k - 1] < end) for k in paid)
    words = len(description.split())
    assert len(paid) <= (words if granularity == "word" else len(ids[0]))


def test_first_increment_is_measured_from_r1_of_the_empty_text(clips, tiny_clip):
    from rewards.clip_alignment import batch_video_embeddings, get_scorer, incremental_rewards

    scorer = get_scorer(tiny_clip, None, "cpu")
    columns = {key: [clips[0][key]] for key in ("id", "images")}
    video = batch_video_embeddings(scorer, columns, 1)
    step = incremental_rewards(video, ["a red car stops ahead"], scorer)[0]
    empty = scorer.empty_text_cosines(video)[0]
    first_word = scorer.cosines(video, ["a"])[0]
    assert step.initial == pytest.approx(max(empty, 0.0))
    assert step.rewards[0] == pytest.approx(max(first_word, 0.0) - max(empty, 0.0), abs=1e-6)


# ---------------------------------------------------------------------------------------------
# The TRL internals the trainer overrides: a changed signature must fail here, not mid-training


@pytest.mark.parametrize("name", sorted(ac.TRL_OVERRIDES))
def test_overridden_trl_internals_keep_their_signature(name):
    import inspect

    from trl import GRPOTrainer

    assert hasattr(GRPOTrainer, name), f"GRPOTrainer no longer has {name}: the actor-critic's override is dead code"
    parameters = list(inspect.signature(getattr(GRPOTrainer, name)).parameters)
    expected = ac.TRL_OVERRIDES[name]
    assert parameters[: len(expected)] == list(expected), f"{name} changed: {parameters}"


# ---------------------------------------------------------------------------------------------
# Spans: advantages only where a reward judges


def test_span_mask_covers_the_description_tokens_only(processor):
    from taxonomy.answer import format_answer
    from taxonomy.spans import span_chars, token_span_mask

    tokenizer = processor.tokenizer
    description = "a red car stops ahead"
    text = " " + format_answer(description, ["stop"], ["obstacle_car"])
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    ends = ac.token_char_ends(tokenizer, ids)
    start, end = span_chars(text, "description")
    assert text[start:end] == description + '"'
    mask = token_span_mask(ends, start, end)
    covered = "".join(tokenizer.decode(ids[: k + 1])[len(tokenizer.decode(ids[:k])):] for k, m in enumerate(mask) if m)
    assert description in covered and "stop" not in covered.replace(description, "")
    assert 0 < sum(mask) < len(mask) / 2  # the labels and justification are most of the answer


def description_reward(completions, **kwargs):
    return [1.0] * len(completions)


description_reward.span = "description"


def even_description_token_reward(texts, completion_ids, inputs):
    return even_token_reward(texts, completion_ids, inputs)


even_description_token_reward.span = "description"  # a dense reward says its span as a reward does


def test_advantages_sit_on_the_judged_span_only(tiny_vlm_dir, processor, clips, tmp_path, monkeypatch):
    from trl import GRPOTrainer

    config = _config(tmp_path, max_completion_length=24, terminal_reward_weight=1.0)
    from transformers import AutoModelForImageTextToText

    trainer = ac.ActorCriticTrainer(
        model=AutoModelForImageTextToText.from_pretrained(tiny_vlm_dir), reward_funcs=description_reward,
        args=config, train_dataset=clips, processing_class=processor, token_reward_fn=even_description_token_reward,
    )
    assert trainer.judged_spans == ["description"]
    trainer.model.train()
    batch = trainer._prepare_inputs(_generation_batch(clips))
    # An untrained model writes no description: put one span in by hand on a known token range.
    span = torch.zeros_like(batch["completion_mask"])
    span[:, 2:5] = 1
    batch["span_mask"] = span * batch["completion_mask"]
    seen = {}
    original = GRPOTrainer._compute_loss

    def spy(self, model, inputs):
        seen["advantages"] = None
        loss = original(self, model, inputs)
        seen["advantages"] = inputs["advantages"]
        return loss

    monkeypatch.setattr(GRPOTrainer, "_compute_loss", spy)
    trainer.current_gradient_accumulation_steps = 1
    trainer.compute_loss(trainer.model, batch)
    outside = seen["advantages"] * (1 - batch["span_mask"])
    assert outside.abs().sum() == 0
    inside = seen["advantages"][batch["span_mask"].bool()]
    assert inside.abs().sum() > 0 and abs(float(inside.mean())) < 1e-5  # (5): normalised over the span


# ---------------------------------------------------------------------------------------------
# Several optimizer steps: the critic's gradients, its learning, and resuming


def test_value_head_gradients_are_empty_at_the_start_of_every_optimizer_step(tiny_vlm_dir, processor, clips, tmp_path):
    from transformers import TrainerCallback

    config = _config(tmp_path, max_steps=4, gradient_accumulation_steps=2, steps_per_generation=2)
    trainer = _trainer(tiny_vlm_dir, processor, clips, config)
    norms = []

    class HeadGradAtStepBegin(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            grads = [p.grad for p in trainer.value_head.parameters() if p.grad is not None]
            norms.append(float(sum(g.norm() ** 2 for g in grads) ** 0.5) if grads else 0.0)

    trainer.add_callback(HeadGradAtStepBegin())
    trainer.train()
    # on_step_begin fires once per optimizer step, before its first micro-batch.
    assert norms == [0.0] * config.max_steps


def clip_index_reward(completions, **kwargs):
    """A sequence reward fixed by the clip: V(s_k) = this value for every k, a known value function."""
    return [float(int(i.split("-")[1])) / 3.0 for i in kwargs["id"]]


def test_critic_learns_a_known_value_function(tiny_vlm_dir, processor, clips, tmp_path):
    """Policy frozen (warm-up all along), reward = f(clip): the critic must explain the returns."""
    from transformers import AutoModelForImageTextToText

    steps = 40
    config = _config(
        tmp_path, max_steps=steps, critic_warmup_steps=steps, learning_rate=0.0, value_learning_rate=1e-2,
        per_device_train_batch_size=4 * NUM_GENERATIONS, value_head_hidden_size=32,
    )
    trainer = ac.ActorCriticTrainer(
        model=AutoModelForImageTextToText.from_pretrained(tiny_vlm_dir), reward_funcs=clip_index_reward,
        args=config, train_dataset=clips, processing_class=processor,
    )
    trainer.train()
    ev = [log["actor_critic/explained_variance"] for log in trainer.state.log_history if "actor_critic/explained_variance" in log]
    assert len(ev) >= steps - 1
    assert float(np.mean(ev[-5:])) >= 0.8, str([round(e, 2) for e in ev])


def test_resumed_run_ends_where_an_uninterrupted_run_ends(tiny_vlm_dir, processor, clips, tmp_path):
    straight = _trainer(tiny_vlm_dir, processor, clips, _config(tmp_path / "a", max_steps=3, save_strategy="steps", save_steps=1))
    straight.train()
    resumed = _trainer(tiny_vlm_dir, processor, clips, _config(tmp_path / "b", max_steps=3))
    resumed.train(resume_from_checkpoint=f"{tmp_path}/a/out/checkpoint-1")
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, msg=f"policy {name}")
    for (name, a), b in zip(straight.value_head.state_dict().items(), resumed.value_head.state_dict().values()):
        torch.testing.assert_close(a, b, msg=f"value head {name}")


def test_value_bias_starts_at_the_first_rollouts_mean_return(tiny_vlm_dir, processor, clips, tmp_path):
    trainer = _trainer(tiny_vlm_dir, processor, clips, _config(tmp_path, learning_rate=0.0, value_learning_rate=1e-9))
    assert not bool(trainer.value_head.bias_initialised)
    trainer.train()
    assert bool(trainer.value_head.bias_initialised)
    log = trainer.state.log_history[0]
    # Near-zero output weights: V starts at the bias, i.e. at the mean return.
    assert log["actor_critic/value_mean"] == pytest.approx(log["actor_critic/return_mean"], abs=0.05 * abs(log["actor_critic/return_mean"]) + 1e-3)
