"""The RL record's arithmetic (evaluate/record.py): spreads over seeds and the done-when checks."""

from __future__ import annotations

import json

import pytest

from evaluate import record


def _metrics(act=0.8, expl=0.8, act_m=0.5, expl_m=0.5, valid=1.0, clip=0.57, description=0.5):
    return {"actions": {"f1_all": act, "mf1": act_m, "per_class": {"forward": act}},
            "reasons": {"f1_all": expl, "mf1": expl_m, "per_class": {"road_clear": expl}},
            "schema_valid_rate": valid, "clip_score": clip, "description": {"exact_match": description}}


def _chain(**per_stage):
    """Three seeds per model; per_stage overrides a model's metrics as a list of three dicts."""
    base = {run.name: [_metrics() for _ in range(3)] for run in record.RUNS}
    base.update(per_stage)
    return base


def _rewards(before=(0.5, 0.5, 0.5), after=(0.6, 0.6, 0.6)):
    return {run.name: [{"before": b, "after": a} for b, a in zip(before, after)] for run in record.RUNS if run.rl}


def _check(lines, prefix):
    return [ok for ok, text in lines if text.startswith(prefix)]


def test_spread_mean_range_and_text():
    s = record.Spread([0.1, 0.3, 0.2])
    assert s.mean == pytest.approx(0.2) and s.range == pytest.approx(0.2)
    assert str(s) == "0.2000 [0.1000, 0.3000]"


def test_a_gain_within_the_seed_range_is_no_gain():
    lines = record.checks(_chain(), _rewards(before=(0.5, 0.5, 0.5), after=(0.45, 0.6, 0.6)))
    assert _check(lines, "stage2 raises its own reward") == [False]  # gain 0.05 < range 0.15
    lines = record.checks(_chain(), _rewards())
    assert _check(lines, "stage2 raises its own reward") == [True]


def test_a_stage_that_lowers_f1_by_more_than_the_tolerance_is_a_miss():
    lines = record.checks(_chain(stage2=[_metrics(act=0.78) for _ in range(3)]), _rewards())
    assert _check(lines, "stage2 vs stage1, act F1_all") == [False]
    assert _check(lines, "stage3 vs stage2, act F1_all") == [True]  # stage 3 climbs back: fine
    lines = record.checks(_chain(stage2=[_metrics(act=0.795) for _ in range(3)]), _rewards())
    assert _check(lines, "stage2 vs stage1, act F1_all") == [True]


def test_final_stage_must_beat_sft_beyond_the_range_and_keep_mf1_and_validity():
    better = [_metrics(act=0.85, expl=0.85, valid=0.995) for _ in range(3)]
    lines = record.checks(_chain(stage3=better), _rewards())
    assert all(_check(lines, "stage3 beats sft"))
    assert _check(lines, "stage3 schema-valid") == [True]
    worse = [_metrics(act=0.85, expl=0.85, act_m=0.4, valid=0.98) for _ in range(3)]
    lines = record.checks(_chain(stage3=worse), _rewards())
    assert _check(lines, "stage3 act mF1 not below") == [False]
    assert _check(lines, "stage3 schema-valid") == [False]


def test_rl_prompts_seen_counts_clips_not_completions():
    recipe = {"per_device_train_batch_size": 32, "gradient_accumulation_steps": 2, "num_generations": 8, "max_steps": 10}
    assert record.rl_prompts_seen(recipe) == 80


def _rewards_with_reference(before, after, reference):
    return {run.name: [{"before": b, "after": a, "reference": reference} for b, a in zip(before, after)]
            for run in record.RUNS if run.rl}


def test_a_start_at_the_reference_answers_level_may_hold_its_reward_but_not_lose_it():
    held = _rewards_with_reference((0.571, 0.571, 0.571), (0.5711, 0.5709, 0.5710), reference=0.5697)
    assert _check(record.checks(_chain(), held), "stage1 holds its own reward") == [True]
    lost = _rewards_with_reference((0.571, 0.571, 0.571), (0.560, 0.561, 0.562), reference=0.5697)
    assert _check(record.checks(_chain(), lost), "stage1 holds its own reward") == [False]


def test_a_start_far_below_the_reference_answers_must_raise_its_reward():
    flat = _rewards_with_reference((0.80, 0.80, 0.80), (0.80, 0.80, 0.80), reference=1.0)
    lines = record.checks(_chain(), flat)
    assert _check(lines, "stage2 raises its own reward") == [False]
    assert _check(lines, "stage2 holds") == []


def test_the_headroom_table_shows_every_figure_and_skips_an_undefined_share():
    seeds = [{"clips": 150, "model": 0.571, "reference": 0.570, "empty": 0.358, "other_clip": 0.27,
              "best_train_description": 0.587, "best_is_reference": 0.01, "model_differs": 70,
              "prefers_reference": 0.4},
             {"clips": 150, "model": 0.572, "reference": 0.570, "empty": 0.358, "other_clip": 0.26,
              "best_train_description": 0.588, "best_is_reference": 0.02, "model_differs": 0,
              "prefers_reference": None}]
    text = "\n".join(record.render_headroom(seeds))
    assert "| SFT's descriptions | 0.5715 [0.5710, 0.5720] |" in text
    assert "the share where CLIP prefers the reference | 0.4000 |" in text  # the seed with no wrong description has no share
    assert "differs from the reference on 35 of 150" in text


def test_an_evaluation_made_before_the_description_metric_gets_it_from_its_answers(tmp_path):
    from evaluate.record import evaluate

    (tmp_path / "metrics.json").write_text(json.dumps({"clip_score": 0.5}))
    answers = [{"parsed": {"description": "A road."}, "truth": {"description": "a road"}},
               {"parsed": {"description": None}, "truth": {"description": "A car ahead."}}]
    (tmp_path / "predictions.jsonl").write_text("".join(json.dumps(a) + "\n" for a in answers))
    metrics = evaluate(tmp_path / "model", tmp_path, "unused-dataset", clip=None)
    assert metrics["description"]["exact_match"] == 0.5 and metrics["clip_score"] == 0.5


def _per_class(left_f1, clips=9):
    return {"actions": {"per_class": {"forward": 0.8, "left": left_f1}, "n_samples": clips},
            "reasons": {"per_class": {"road_clear": 0.9}}}


def test_the_label_signal_table_puts_each_label_beside_its_f1_before_and_after_its_stage():
    row = lambda hit, fa, lift: {"positives": 11, "hit_rate": hit, "false_alarm_rate": fa, "lift": lift}
    signals = [{"actions": {"forward": row(0.9, 0.3, 3.0), "left": row(0.1, 0.0, None)},
                "reasons": {"road_clear": row(0.8, 0.1, 8.0)}},
               {"actions": {"forward": row(0.7, 0.1, 7.0), "left": row(0.0, 0.0, None)},
                "reasons": {"road_clear": row(0.6, 0.1, 6.0)}}]
    start, stage = record.SIGNAL_RUN.start, record.SIGNAL_RUN.name
    metrics = {start: [_per_class(0.0), _per_class(0.2)], stage: [_per_class(0.4), _per_class(0.2)]}
    text = "\n".join(record.render_label_signal(signals, metrics))
    assert "| forward | 11 | 0.800 | 0.200 | 5.0 | 0.800 -> 0.800 |" in text
    assert "| left | 11 | 0.050 | 0.000 | – | 0.100 -> 0.300 |" in text  # no lift on any seed
    assert "| road_clear | 11 | 0.700 | 0.100 | 7.0 | 0.900 -> 0.900 |" in text


def test_the_label_signal_is_read_back_and_not_sampled_again(tmp_path, monkeypatch):
    start = record.SIGNAL_RUN.start
    cached = tmp_path / "eval" / start / record.LABEL_SIGNAL_FILE
    cached.parent.mkdir(parents=True)
    cached.write_text(json.dumps({"actions": {}, "reasons": {}, "clips": 3}))
    monkeypatch.setattr(record, "signal_of_model", lambda *a, **k: pytest.fail("sampled again"))
    assert record.stage_label_signal(tmp_path, "unused-dataset", 0)["clips"] == 3
    cached.unlink()
    monkeypatch.setattr(record, "signal_of_model", lambda *a, **k: {"clips": 4})
    assert record.stage_label_signal(tmp_path, "unused-dataset", 0) == {"clips": 4}
    assert json.loads(cached.read_text()) == {"clips": 4}


def _no_side_tables(monkeypatch):
    """The record's val-only tables (R1 headroom, label signal, R1 curve), faked: those tests are above."""
    monkeypatch.setattr(record, "headroom_of_predictions", lambda *a, **k: {"model_differs": 1, "clips": 5})
    monkeypatch.setattr(record, "stage_label_signal", lambda *a, **k: {"actions": {}, "reasons": {}})
    monkeypatch.setattr(record, "r1_curve", lambda *a, **k: [(0, 0.5)])
    monkeypatch.setattr(record, "plot_curves", lambda *a, **k: None)
    monkeypatch.setattr(record, "forced_labels", lambda *a, **k: _forcing(0.8, 0.9))
    monkeypatch.setattr(record, "clip_intervals", lambda eval_dirs: {})


def _forcing(own: float, forced: float, wrong: int = 3) -> dict:
    scores = lambda v: {"actions": {"f1_all": v, "mf1": v / 2}, "reasons": {"f1_all": v, "mf1": v / 2}}
    return {"described_wrong": wrong, "clips": 10, "own": scores(own), "forced": scores(forced)}


def test_the_forcing_table_shows_each_models_own_and_forced_labels():
    forcing = {"sft": [_forcing(0.8, 0.9, 2), _forcing(0.6, 0.9, 4)], "stage3": [_forcing(0.7, 0.95), _forcing(0.7, 0.85)]}
    text = "\n".join(record.render_forcing(forcing, "the held-out world"))
    assert "| sft | 3 of 10 [2, 4] | 0.7000 [0.6000, 0.8000] -> 0.9000 [0.9000, 0.9000] |" in text
    assert "| stage3 | 3 of 10 [3, 3] | 0.7000 [0.7000, 0.7000] -> 0.9000 [0.8500, 0.9500] |" in text


def test_the_forcing_is_read_back_and_not_decoded_again(tmp_path, monkeypatch):
    computed = []
    monkeypatch.setattr(record, "force_descriptions", lambda *a: computed.append(a) or _forcing(0.5, 0.6))
    first = record.forced_labels(tmp_path / "sft", tmp_path / "eval", "world", "val")
    assert computed == [(str(tmp_path / "sft"), str(tmp_path / "eval"), "world", "val")] and first["own"]
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / record.FORCING_FILE).write_text(json.dumps(_forcing(0.1, 0.2)))
    assert record.forced_labels(tmp_path / "sft", tmp_path / "eval", "world", "val") == _forcing(0.1, 0.2)
    assert len(computed) == 1


def test_with_a_held_out_world_every_model_is_scored_and_checked_there_too(tmp_path, monkeypatch):
    scored = []

    def fake_evaluate(model_dir, out, dataset, clip, max_samples=None, gallery_size=12, split="val", **_):
        scored.append((model_dir.name, out.parent.name, dataset, split))
        act = 0.9 if dataset == "world2" else 0.8  # the held-out world's figures differ from val's
        return {**_metrics(act=act), "actions": {"f1_all": act, "mf1": 0.5, "per_class": {"forward": act},
                                                 "n_samples": 7 if dataset == "world2" else 5}}

    def fake_rewards(eval_root, dataset, split="val"):
        return {run.name: {"before": 0.5, "after": 0.7 if dataset == "world2" else 0.5, "reference": 1.0}
                for run in record.RUNS if run.rl}

    monkeypatch.setattr(record, "train", lambda run, seed, root, dataset: root / run.name)
    monkeypatch.setattr(record, "evaluate", fake_evaluate)
    monkeypatch.setattr(record, "own_rewards", fake_rewards)
    _no_side_tables(monkeypatch)
    forced = []
    monkeypatch.setattr(record, "forced_labels", lambda model, eval_dir, dataset, split:
                        forced.append((model.name, eval_dir.parent.name, dataset, split)) or _forcing(0.8, 0.9))
    interval_sets = []
    monkeypatch.setattr(record, "clip_intervals", lambda eval_dirs: interval_sets.append(eval_dirs) or {})
    out = tmp_path / "record.md"
    record.main(["--seeds", "0", "1", "--work", str(tmp_path), "--dataset", "demo", "--holdout", "world2",
                 "--holdout-split", "heldout", "--out", str(out)])
    assert forced == [(name, "eval-holdout", "world2", "heldout") for name in record.FORCED_RUNS] * 2
    # one interval set per evaluation set, each from every run's folders of that set, one per seed
    assert [{d.parent.name for dirs in e.values() for d in dirs} for e in interval_sets] == [{"eval"}, {"eval-holdout"}]
    assert interval_sets[1]["stage3"] == [tmp_path / f"seed{s}" / "eval-holdout" / "stage3" for s in (0, 1)]

    for run in record.RUNS:  # each model, each seed, on both sets, each set in its own folder
        assert scored.count((run.name, "eval", "demo", "val")) == 2
        assert scored.count((run.name, "eval-holdout", "world2", "heldout")) == 2
    text = out.read_text()
    assert "## Every model (val, 5 clips)" in text and "## Every model (the held-out world, 7 clips)" in text
    assert "- **missed**: stage2 raises its own reward on val:" in text
    assert "- met: stage2 raises its own reward on the held-out world:" in text
    assert "## F1 per label (the held-out world, 7 clips, mean over seeds)" in text  # the larger set's
    assert "## The labels after the reference description (the held-out world;" in text
    raw = json.loads(out.with_suffix(".json").read_text())
    assert raw["sets"]["the held-out world"]["metrics"]["sft"][0]["act F1_all"] == 0.9
    assert raw["sets"]["val"]["clips"] == 5


def test_without_a_held_out_world_the_record_scores_val_alone(tmp_path, monkeypatch):
    scored = []
    monkeypatch.setattr(record, "train", lambda run, seed, root, dataset: root / run.name)
    monkeypatch.setattr(record, "evaluate", lambda model_dir, out, dataset, clip, split="val", **_:
                        scored.append(dataset) or {**_metrics(), "actions": {"f1_all": 0.8, "mf1": 0.5, "n_samples": 5,
                                                                             "per_class": {"forward": 0.8}}})
    monkeypatch.setattr(record, "own_rewards", lambda *a, **k: {run.name: {"before": 0.5, "after": 0.5, "reference": 1.0}
                                                                 for run in record.RUNS if run.rl})
    _no_side_tables(monkeypatch)
    record.main(["--seeds", "0", "--work", str(tmp_path), "--dataset", "demo", "--out", str(tmp_path / "r.md")])
    assert set(scored) == {"demo"} and "held-out" not in (tmp_path / "r.md").read_text()


def test_the_per_label_table_shows_each_models_mean_f1_over_seeds():
    metrics = {run.name: [_per_class(0.2), _per_class(0.4)] for run in record.RUNS}
    metrics["stage2"] = [_per_class(0.6), _per_class(0.8)]
    scores = record.Scores(record.EvalSet("the held-out world", "w", "val", "eval-holdout"), metrics, {})
    text = "\n".join(record.render_per_label(scores))
    assert "## F1 per label (the held-out world, 9 clips, mean over seeds)" in text
    columns = [run.name for run in record.RUNS]
    left = ["0.300"] * len(columns)
    left[columns.index("stage2")] = "0.700"
    assert "| left | " + " | ".join(left) + " |" in text
    assert "| road_clear | " + " | ".join(["0.900"] * len(columns)) + " |" in text


def test_every_rl_stage_of_the_chain_has_a_null_control_from_the_same_start():
    runs = {run.name: run for run in record.RUNS}
    for stage in record.CHAIN[1:]:
        control = runs[f"{stage}_null"]
        assert control.null_of == stage and control.start == runs[stage].start
        assert control.recipe == runs[stage].recipe and control.extra[-2:] == ("--reward_control", "true")
    names = [run.name for run in record.RUNS]  # each control trains after the model it starts from
    assert all(names.index(run.start) < names.index(run.name) for run in record.RUNS if run.start)


def test_the_control_table_shows_each_stage_minus_its_null_control_per_seed():
    metrics = {run.name: [_metrics(act=0.8), _metrics(act=0.8)] for run in record.RUNS}
    metrics["stage2"] = [_metrics(act=0.83), _metrics(act=0.81)]
    rewards = {run.name: [{"before": 0.5, "after": 0.5}, {"before": 0.5, "after": 0.5}]
               for run in record.RUNS if run.rl}
    rewards["stage2"] = [{"before": 0.5, "after": 0.6}, {"before": 0.5, "after": 0.7}]
    rewards["stage2_null"] = [{"before": 0.5, "after": 0.55}, {"before": 0.5, "after": 0.45}]
    metrics["sft"][0]["actions"]["n_samples"] = 9
    scores = record.Scores(record.EvalSet("val", "d", "val", "eval"), metrics, rewards)
    (row,) = [line for line in record.render_controls(scores) if line.startswith("| stage2 |")]
    control, stage, information, act, _ = row.strip("|").split("|")[1:]
    assert control.strip() == "+0.0000 (+0.0500 / -0.0500)"
    assert stage.strip() == "+0.1500 (+0.1000 / +0.2000)"
    assert information.strip() == "+0.1500 (+0.0500 / +0.2500)"
    assert act.strip() == "+0.0200 (+0.0300 / +0.0100)"


def test_every_run_is_compared_with_its_start_and_every_stage_with_its_control():
    pairs = set(record.COMPARISONS)
    assert {("sft", "stage1"), ("stage1", "stage2"), ("stage2", "stage3"), ("sft", "sft_control"),
            ("sft", "stage1_grpo"), ("stage2", "stage3_null")} <= pairs
    assert {("stage1_null", "stage1"), ("stage2_null", "stage2"), ("stage3_null", "stage3"), ("sft", "stage3")} <= pairs


def _predictions(folder, act_hits):
    """An evaluation folder whose answers hit the one true action ("stop") on the clips marked 1."""
    folder.mkdir(parents=True)
    rows = [{"id": f"c{k}", "parsed": {"actions": ["stop"] if hit else ["forward"], "reasons": []},
             "truth": {"actions": ["stop"], "reasons": []}} for k, hit in enumerate(act_hits)]
    (folder / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_the_interval_table_shows_end_minus_start_per_comparison(tmp_path):
    hits = {name: [0, 0, 0, 0] for name in (run.name for run in record.RUNS)}
    hits["stage3"] = [1, 0, 0, 0]  # one clip better than SFT: the clips cannot tell it from none
    hits["stage2"] = [1, 1, 1, 1]  # every clip better than stage 1: they can
    dirs = {name: [_predictions(tmp_path / f"seed{s}" / name, h) for s in (0, 1)] for name, h in hits.items()}
    metrics = {run.name: [_metrics(), _metrics()] for run in record.RUNS}
    metrics["sft"][0]["actions"]["n_samples"] = 4
    scores = record.Scores(record.EvalSet("val", "d", "val", "eval"), metrics, {}, record.clip_intervals(dirs))
    text = "\n".join(record.render_intervals(scores))
    assert "## Which differences the clips can tell from none (val, 4 clips)" in text
    (row,) = [line for line in text.splitlines() if line.startswith("| sft -> stage3 |")]
    act, act_seeds = row.strip("|").split("|")[1:3]
    assert act.strip().startswith("+0.2500 [") and act_seeds.strip() == "+0.2500 / +0.2500"
    (row,) = [line for line in text.splitlines() if line.startswith("| stage3_null -> stage3 |")]
    assert row.split("|")[2].strip().startswith("+0.2500")
    (row,) = [line for line in text.splitlines() if line.startswith("| sft -> stage1 |")]
    assert row.split("|")[2].strip() == "+0.0000 [+0.0000, +0.0000]"
    # an interval clear of 0 is in bold, one that holds 0 is not
    (row,) = [line for line in text.splitlines() if line.startswith("| stage1 -> stage2 |")]
    assert row.split("|")[2].strip() == "**+1.0000 [+1.0000, +1.0000]**"
