"""How much can stage 1 raise R1 honestly? R1's room above a model's descriptions, on one split.

    python -m evaluate.r1_headroom --predictions work/eval/sft/predictions.jsonl --dataset work/dataset \\
        --split val --clip-model local-dir:work/models/tiny-clip-trained

R1 is the cosine c = v . t of a clip's pooled frame embedding v and a description's embedding t
(:mod:`rewards.clip_alignment`). Stage 1 can only raise it by writing descriptions the CLIP likes
more. This measures, for the clips of a split, the mean cosine of:

- ``model``: the model's own descriptions (the ``parsed.description`` of ``make eval``'s
  ``predictions.jsonl``);
- ``reference``: the split's reference descriptions (what a truthful description scores);
- ``empty``: the empty text, R1(I, "") (where the per-word increments start);
- ``other_clip``: another clip's reference description (clip i gets clip i+1's), a wrong one;
- ``best_train_description``: per clip, the best of every distinct train-split description.

and two shares that say whether the room above ``model`` is room for a better description:

- ``best_is_reference``: clips whose best train description is their own reference description;
- ``prefers_reference``: among the clips whose model description differs from the reference,
  those where the reference scores higher. Near 1, R1 can teach the model its mistakes; near or
  below 1/2, a description R1 likes more is no truer.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Sequence

from core.logs import configure_logging

DESCRIPTION_COLUMN = "description"
ID_COLUMN = "id"
FRAMES_COLUMN = "frames"


def _stack(embeddings: Sequence[Any]):
    import torch

    if any(e is None for e in embeddings):
        raise ValueError("an empty or unreadable description has no CLIP embedding; R1 gives it the floor")
    return torch.stack(list(embeddings))


def r1_headroom(scorer: Any, ids: Sequence[Any], frames: Sequence[Any], model_descriptions: Sequence[str],
                reference_descriptions: Sequence[str], train_descriptions: Sequence[str]) -> dict:
    """The module docstring's figures. ``scorer`` is a :class:`rewards.clip_alignment.ClipScorer`
    (``video_embeddings``, ``text_embeddings``, ``empty_text_cosines``)."""
    n = len(ids)
    if not n or not (len(frames) == len(model_descriptions) == len(reference_descriptions) == n):
        raise ValueError("ids, frames, model and reference descriptions must be non-empty and of one length")
    videos = scorer.video_embeddings(ids, frames)  # (N, D), L2-normalised

    def cosines(texts: Sequence[str]) -> list[float]:
        scores = scorer.cosines(videos, list(texts))
        return [float("nan") if s is None else s for s in scores]

    model = cosines(model_descriptions)
    reference = cosines(reference_descriptions)
    other = cosines([reference_descriptions[(i + 1) % n] for i in range(n)])
    pool = sorted(set(train_descriptions))
    pool_scores = videos @ _stack(scorer.text_embeddings(pool)).T  # (N, P)
    best_value, best_index = pool_scores.max(dim=1)
    differ = [i for i in range(n) if model_descriptions[i].strip() != reference_descriptions[i].strip()]

    def mean(values: Sequence[float]) -> float:
        return sum(values) / len(values)

    return {
        "clips": n,
        "model": mean(model),
        "reference": mean(reference),
        "empty": mean(scorer.empty_text_cosines(videos)),
        "other_clip": mean(other),
        "best_train_description": float(best_value.mean()),
        "train_descriptions": len(pool),
        "best_is_reference": mean([float(pool[j].strip() == reference_descriptions[i].strip())
                                   for i, j in enumerate(best_index.tolist())]),
        "model_differs": len(differ),
        "prefers_reference": mean([float(reference[i] > model[i]) for i in differ]) if differ else None,
    }


def headroom_of_predictions(predictions: str | Path, dataset: str, split: str, clip_model: str,
                            pretrained: str | None = None) -> dict:
    """:func:`r1_headroom` of a ``make eval`` predictions file against its dataset split."""
    from evaluate.generate import load_eval_split
    from rewards.clip_alignment import get_scorer

    with open(predictions, encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    evaluated = load_eval_split(dataset, split)
    position = {clip_id: i for i, clip_id in enumerate(evaluated[ID_COLUMN])}
    missing = [row["id"] for row in rows if row["id"] not in position]
    if missing:
        raise ValueError(f"{predictions}: {len(missing)} clip id(s) not in split {split!r} of {dataset}, e.g. {missing[0]!r}")
    picked = evaluated.select([position[row["id"]] for row in rows])
    scorer = get_scorer(clip_model, pretrained)
    return r1_headroom(scorer, picked[ID_COLUMN], picked[FRAMES_COLUMN],
                       [row["parsed"]["description"] or "" for row in rows], picked[DESCRIPTION_COLUMN],
                       load_eval_split(dataset, "train")[DESCRIPTION_COLUMN])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--predictions", required=True, help="predictions.jsonl written by make eval")
    parser.add_argument("--dataset", required=True, help="the prepared DatasetDict the model was evaluated on")
    parser.add_argument("--split", default="val")
    parser.add_argument("--clip-model", required=True, help='R1\'s CLIP, e.g. "local-dir:work/models/tiny-clip-trained"')
    parser.add_argument("--pretrained", default=None, help="open_clip pretrained tag (none for a local-dir model)")
    args = parser.parse_args(argv)
    configure_logging()
    print(json.dumps(headroom_of_predictions(args.predictions, args.dataset, args.split, args.clip_model,
                                             args.pretrained), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
