"""R1's headroom (evaluate/r1_headroom.py) on a scorer whose geometry is known."""

from __future__ import annotations

import math

import pytest
import torch

from evaluate.r1_headroom import r1_headroom


class AxisScorer:
    """Clip i's video is the unit vector e_i; a text "clip i" points at e_i, "clip i-ish" half way
    between e_i and the last axis, anything else along the last axis; "" is the empty text."""

    def __init__(self, n):
        self.n = n

    def _text(self, text):
        vector = torch.zeros(self.n + 1)
        if text.startswith("clip "):
            index = int(text.split()[1].rstrip("-ish"))
            vector[index] = 1.0
            if text.endswith("-ish"):
                vector[self.n] = 1.0
        else:
            vector[self.n] = 1.0
        return torch.nn.functional.normalize(vector, dim=0)

    def video_embeddings(self, ids, frames):
        return torch.eye(self.n + 1)[: len(ids)]

    def text_embeddings(self, texts):
        return [self._text(t) if t else None for t in texts]

    def empty_text_cosines(self, videos):
        return [0.0 for _ in videos]

    def cosines(self, videos, texts):
        return [None if t is None else float(videos[i] @ t) for i, t in enumerate(self.text_embeddings(texts))]


def _run(model, n=4, pool=None):
    reference = [f"clip {i}" for i in range(n)]
    return r1_headroom(AxisScorer(n), list(range(n)), [[0]] * n, model, reference, pool or reference)


def test_a_model_that_says_the_reference_is_at_the_reference_level_with_no_room():
    out = _run([f"clip {i}" for i in range(4)])
    assert out["model"] == pytest.approx(1.0) and out["reference"] == pytest.approx(1.0)
    assert out["best_train_description"] == pytest.approx(1.0) and out["best_is_reference"] == 1.0
    assert out["model_differs"] == 0 and out["prefers_reference"] is None
    assert out["other_clip"] == pytest.approx(0.0) and out["empty"] == 0.0


def test_a_half_wrong_model_is_below_the_reference_and_r1_prefers_the_truth():
    out = _run(["clip 0-ish", "clip 1", "clip 2-ish", "road"])
    assert out["model"] == pytest.approx((2 * math.sqrt(0.5) + 1) / 4)
    assert out["model_differs"] == 3 and out["prefers_reference"] == 1.0


def test_a_clip_that_likes_wrong_descriptions_shows_as_a_low_preference_for_the_truth():
    # a CLIP for which clip 0's best train text is clip 1's: the "room" is another clip's description
    class Confused(AxisScorer):
        def video_embeddings(self, ids, frames):
            videos = super().video_embeddings(ids, frames).clone()
            videos[0] = torch.nn.functional.normalize(torch.tensor([0.3, 1.0, 0, 0, 0]), dim=0)
            return videos

    reference = [f"clip {i}" for i in range(4)]
    out = r1_headroom(Confused(4), list(range(4)), [[0]] * 4, ["clip 1", "clip 1", "clip 2", "clip 3"], reference, reference)
    assert out["best_is_reference"] == pytest.approx(0.75)
    assert out["model_differs"] == 1 and out["prefers_reference"] == 0.0
    assert out["model"] > out["reference"]


def test_lengths_must_match():
    with pytest.raises(ValueError, match="one length"):
        r1_headroom(AxisScorer(2), [0, 1], [[0]] * 2, ["clip 0"], ["clip 0", "clip 1"], ["clip 0"])
