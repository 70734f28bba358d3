"""How much of a model's label error is its description's: the labels it gives after the true one.

Every answer says its description first and its labels after it, so the labels can follow the
description. For each clip whose greedy description (in an evaluation's ``predictions.jsonl``)
differs from the reference, the answer is decoded again, greedily, with the reference description
forced in its place (:func:`taxonomy.answer.answer_through_description`), and the labels that
follow are scored by BDD-OIA's metrics beside the model's own answers:

- ``own``: the metrics of the model's answers as evaluated;
- ``forced``: the same, with the answers of the wrongly described clips replaced by the forced ones;
- ``wrong_clips``: both, on those clips only;
- ``check``: of ``--check-clips`` clips described right, how many give the same labels when their
  own description is forced (all of them, unless forcing changes what the model does: a tokenizer
  that splits the forced text where the model would not).

What the gap means: where forcing the reference description fixes the labels, the model reads the
labels off its description, and what limits it is what the description says (its perception), not
how it turns a description into labels. A reward that ranks descriptions by their truth then ranks
the labels too. Writes ``description_forcing.json`` into the evaluation folder.

    python -m evaluate.description_forcing --model work/sft --eval work/eval/sft --dataset work/dataset --split test
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Sequence

from core.logs import configure_logging
from evaluate.generate import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_NEW_TOKENS,
    EvaluationError,
    generate_for_split,
    load_eval_split,
    load_model_and_processor,
)
from evaluate.metrics import answer_metrics
from evaluate.run import load_predictions
from rewards.description_match import description_words
from taxonomy.answer import answer_through_description, parse_answer

logger = logging.getLogger(__name__)

OUTPUT_FILE = "description_forcing.json"
DEFAULT_CHECK_CLIPS = 40


def described_right(record: dict) -> bool:
    """The evaluation's exact match: the reference's words in its order (case and , ; . ignored)."""
    return description_words(record["parsed"].get("description")) == description_words(record["truth"]["description"])


def labels(text: str) -> tuple[frozenset, frozenset]:
    parsed = parse_answer(text)
    return frozenset(parsed.actions), frozenset(parsed.reasons)


def summary(metrics: dict) -> dict:
    return {group: {key: metrics[group][key] for key in ("f1_all", "mf1")} for group in ("actions", "reasons")}


def force_descriptions(model_dir: str, eval_dir: str, dataset: str, split: str = "val",
                       batch_size: int = DEFAULT_BATCH_SIZE, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
                       check_clips: int = DEFAULT_CHECK_CLIPS) -> dict:
    records = load_predictions(eval_dir)
    data = load_eval_split(dataset, split)
    if [r["id"] for r in records] != list(data["id"]):
        raise EvaluationError(f"{eval_dir}: its predictions are not of {dataset}[{split}] (ids differ)")
    if "description" not in data.column_names:
        raise EvaluationError(f"{dataset}[{split}] has no reference descriptions to force")
    wrong = [i for i, r in enumerate(records) if not described_right(r)]
    checked = [i for i, r in enumerate(records) if described_right(r)][:check_clips]
    model, processor = load_model_and_processor(model_dir)

    def redecode(indices: list[int], descriptions: list[str]) -> list[str]:
        if not indices:
            return []
        starts = [answer_through_description(d) for d in descriptions]
        return generate_for_split(model, processor, data.select(indices), batch_size, max_new_tokens,
                                  answer_starts=starts, desc="forcing").texts

    references = list(data["description"])  # the column alone: indexing rows would decode their frames
    own_again = redecode(checked, [records[i]["parsed"]["description"] for i in checked])
    forced = redecode(wrong, [references[i] for i in wrong])
    texts = [r["text"] for r in records]
    for i, text in zip(wrong, forced):
        texts[i] = text
    truth = (list(data["actions"]), list(data["reasons"]))
    wrong_truth = ([truth[0][i] for i in wrong], [truth[1][i] for i in wrong])
    result = {
        "model": str(model_dir), "dataset": str(dataset), "split": split, "clips": len(records),
        "described_wrong": len(wrong),
        "own": summary(answer_metrics([r["text"] for r in records], *truth)),
        "forced": summary(answer_metrics(texts, *truth)),
        "check": {"clips": len(checked),
                  "same_labels": sum(labels(a) == labels(records[i]["text"]) for a, i in zip(own_again, checked))},
    }
    if wrong:
        result["wrong_clips"] = {"own": summary(answer_metrics([records[i]["text"] for i in wrong], *wrong_truth)),
                                 "forced": summary(answer_metrics(forced, *wrong_truth))}
    (Path(eval_dir) / OUTPUT_FILE).write_text(json.dumps(result, indent=1))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="the model folder that was evaluated")
    parser.add_argument("--eval", required=True, help="its evaluation folder (predictions.jsonl)")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--split", default="val")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS)
    parser.add_argument("--check-clips", type=int, default=DEFAULT_CHECK_CLIPS)
    args = parser.parse_args(argv)
    configure_logging()
    try:
        result = force_descriptions(args.model, args.eval, args.dataset, args.split, args.batch_size,
                                    args.max_new_tokens, args.check_clips)
    except EvaluationError as err:
        logger.error("%s", err)
        return 2
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
