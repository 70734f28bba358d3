"""A synthetic driving world written to disk in the exact layout of a BDD-OIA release.

Each clip is a short sequence of frames of a road seen from the driver. One concern a module:

- :mod:`.world`: the knobs (:class:`WorldConfig`), the scene facts of a clip, their sampling, and
  the labels and description that follow from them;
- :mod:`.render`: the facts laid out in metres, the camera, the drawing of frames;
- :mod:`.release`: writing a BDD-OIA release (splits, annotation files, frames, videos, staging
  and publishing), :func:`generate` and :func:`load_truth`;
- :mod:`.cli`: ``python -m data_prep.synth --out DIR --clips N --seed S [--frames 5 --num-proc 2
  --videos]``.

The names other code uses are importable from here.
"""

from data_prep.synth.cli import build_parser, main
from data_prep.synth.release import (
    ACTIONS_FILE,
    CONFIG_FILE,
    DESCRIPTIONS_FILE,
    REASONS_FILE,
    SPLITS,
    TRUTH_FILE,
    ClipTruth,
    clip_id,
    generate,
    label_rates,
    load_truth,
)
from data_prep.synth.render import (
    HORIZON_FRACTION,
    HORIZON_JITTER,
    make_clip,
    render_clip,
    render_frame,
    sample_layout,
)
from data_prep.synth.world import (
    SceneFacts,
    WorldConfig,
    describe,
    expected_action_rates,
    sample_facts,
    scene_labels,
    temporal_reasons,
)

__all__ = [
    "ACTIONS_FILE", "CONFIG_FILE", "DESCRIPTIONS_FILE", "HORIZON_FRACTION", "HORIZON_JITTER",
    "REASONS_FILE", "SPLITS", "TRUTH_FILE", "ClipTruth", "SceneFacts", "WorldConfig",
    "build_parser", "clip_id", "describe", "expected_action_rates", "generate", "label_rates",
    "load_truth", "main", "make_clip", "render_clip", "render_frame", "sample_facts",
    "sample_layout", "scene_labels", "temporal_reasons",
]
