"""A self-contained HTML gallery of answers, in the style of the BDD-OIA paper's qualitative figure.

Each example shows its M frames (embedded as base64 JPEG thumbnails, upscaled so 64-px frames stay
visible), the four actions as arrows (forward ↑, stop ■, left ←, right →) for the ground truth and
for the prediction, and the explanations (reasons) coloured by outcome:

- green: true positive (predicted and true), red: false positive (predicted, not true),
  grey: false negative (true, not predicted). True negatives are not listed.

The prediction's arrows use the same colours, so a glance shows which decisions were right. The
card also shows the predicted and reference descriptions, the justification, whether the answer
was schema-valid JSON, and the raw text (folded).
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from PIL import Image

from taxonomy.answer import ParsedAnswer
from taxonomy.labels import ACTIONS, ACTION_KEYS, REASON_BY_KEY, REASON_KEYS

TRUE_POSITIVE, FALSE_POSITIVE, FALSE_NEGATIVE, TRUE_NEGATIVE = "tp", "fp", "fn", "tn"
ARROWS: dict[str, str] = {"forward": "↑", "stop": "■", "left": "←", "right": "→"}
DEFAULT_THUMB_HEIGHT = 144  # px on the page; tiny 64x36 frames are upscaled to this
JPEG_QUALITY = 88

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #222;
       background: #f4f5f7; }
h1 { font-size: 22px; margin: 0 0 4px 0; }
.meta { color: #555; font-size: 13px; margin-bottom: 12px; }
.legend { font-size: 13px; margin-bottom: 18px; }
.legend .item { margin-right: 16px; white-space: nowrap; }
.legend .arrow { width: 22px; height: 22px; line-height: 22px; font-size: 14px; vertical-align: middle; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(540px, 1fr)); gap: 16px; }
.card { background: white; border-radius: 8px; padding: 12px 14px; box-shadow: 0 1px 3px #0002; }
.card h2 { font-size: 15px; margin: 0 0 8px 0; display: flex; justify-content: space-between; }
.frames { display: flex; gap: 4px; margin-bottom: 8px; }
.frames figure { margin: 0; flex: 1 1 0; min-width: 0; text-align: center; font-size: 11px; color: #666; }
.frames img { display: block; width: 100%; height: auto; image-rendering: pixelated; border-radius: 3px; }
.decisions { display: flex; gap: 24px; margin: 6px 0 8px 0; }
.decision .who { font-size: 12px; color: #555; margin-bottom: 2px; }
.arrow { display: inline-block; width: 34px; height: 34px; line-height: 34px; text-align: center;
         font-size: 22px; margin-right: 4px; border-radius: 6px; border: 2px solid #ddd;
         color: #ccc; background: #fafafa; }
.arrow.on { color: white; background: #2f5d9b; border-color: #2f5d9b; }
.arrow.tp { color: white; background: #2e9e4f; border-color: #2e9e4f; }
.arrow.fp { color: white; background: #d64541; border-color: #d64541; }
.arrow.fn { color: #888; background: white; border: 2px dashed #999; }
.reasons { list-style: none; padding: 0; margin: 4px 0 8px 0; font-size: 13px; }
.reasons li { display: inline-block; padding: 2px 7px; margin: 2px 3px 2px 0; border-radius: 10px; }
.reason.tp { background: #d8f3df; color: #1d6b34; border: 1px solid #2e9e4f; }
.reason.fp { background: #fbdcdb; color: #9b2320; border: 1px solid #d64541; }
.reason.fn { background: #eeeeee; color: #777; border: 1px dashed #999; }
.none { color: #999; font-size: 13px; }
.text { font-size: 13px; margin: 3px 0; overflow-wrap: anywhere; }
.text b { color: #444; }
.badge { font-size: 12px; padding: 2px 8px; border-radius: 10px; font-weight: normal; }
.badge.valid { background: #d8f3df; color: #1d6b34; }
.badge.invalid { background: #fff0cc; color: #8a6100; }
.badge.nojson { background: #fbdcdb; color: #9b2320; }
details { font-size: 12px; color: #555; }
pre { white-space: pre-wrap; word-break: break-word; background: #f6f6f6; padding: 6px; }
"""


@dataclass
class GalleryExample:
    """What one card shows. ``frames``: PIL images, oldest first (the last is the annotated one)."""

    id: str
    frames: Sequence[Image.Image]
    true_actions: set[str]
    true_reasons: set[str]
    parsed: ParsedAnswer
    raw_text: str
    schema_valid: bool
    reference_description: str = ""
    notes: dict[str, str] = field(default_factory=dict)  # extra lines, e.g. {"CLIP": "0.31"}


def label_outcomes(truth: Iterable[str], predicted: Iterable[str], vocabulary: Sequence[str]) -> dict[str, str]:
    """Outcome of each label of ``vocabulary`` (in its order): tp, fp, fn or tn.

    Labels outside the vocabulary are ignored (the parser never yields them).
    """
    true_set, pred_set = set(truth), set(predicted)
    outcomes = {}
    for key in vocabulary:
        if key in true_set:
            outcomes[key] = TRUE_POSITIVE if key in pred_set else FALSE_NEGATIVE
        else:
            outcomes[key] = FALSE_POSITIVE if key in pred_set else TRUE_NEGATIVE
    return outcomes


def image_data_uri(image: Image.Image, height: int = DEFAULT_THUMB_HEIGHT) -> str:
    """A base64 JPEG data URI of ``image`` scaled to ``height`` px.

    Upscaling uses nearest neighbour (the page shows the pixels the model saw, not a smoothed guess);
    downscaling uses bicubic.
    """
    width = max(1, round(image.width * height / image.height))
    resample = Image.Resampling.NEAREST if height >= image.height else Image.Resampling.BICUBIC
    thumb = image.convert("RGB").resize((width, height), resample)
    buffer = io.BytesIO()
    thumb.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _arrows(outcomes: dict[str, str] | None, truth_set: set[str] | None) -> str:
    """Arrow row: for the truth, possible actions are "on"; for a prediction, classes by outcome."""
    cells = []
    for action in ACTIONS:
        if outcomes is None:
            state = "on" if action.key in (truth_set or set()) else "off"
        else:
            state = outcomes[action.key] if outcomes[action.key] != TRUE_NEGATIVE else "off"
        cells.append(
            f'<span class="arrow {state}" data-action="{action.key}" title="{html.escape(action.phrase)}: '
            f'{state}">{ARROWS[action.key]}</span>'
        )
    return "".join(cells)


def _reason_list(outcomes: dict[str, str]) -> str:
    items = [
        f'<li class="reason {outcome}" data-reason="{key}">{html.escape(REASON_BY_KEY[key].phrase)}</li>'
        for key, outcome in outcomes.items()
        if outcome != TRUE_NEGATIVE
    ]
    if not items:
        return '<div class="none">no reason given or true</div>'
    return '<ul class="reasons">' + "".join(items) + "</ul>"


def _json_badge(example: GalleryExample) -> str:
    if example.schema_valid:
        return '<span class="badge valid">valid JSON</span>'
    if example.parsed.is_json:
        return '<span class="badge invalid">JSON, not schema-valid</span>'
    return '<span class="badge nojson">no JSON</span>'


def render_card(example: GalleryExample, thumb_height: int = DEFAULT_THUMB_HEIGHT) -> str:
    count = len(example.frames)
    frames = "".join(
        f'<figure><img src="{image_data_uri(frame, thumb_height)}" '
        f'alt="frame {i}"><figcaption>{"t" if i == count - 1 else f"t-{count - 1 - i}"}</figcaption></figure>'
        for i, frame in enumerate(example.frames)
    )
    action_outcomes = label_outcomes(example.true_actions, example.parsed.actions, ACTION_KEYS)
    reason_outcomes = label_outcomes(example.true_reasons, example.parsed.reasons, REASON_KEYS)
    notes = "".join(
        f'<div class="text"><b>{html.escape(k)}:</b> {html.escape(v)}</div>' for k, v in example.notes.items()
    )
    return f"""
<div class="card" data-id="{html.escape(example.id)}">
  <h2><span>{html.escape(example.id)}</span>{_json_badge(example)}</h2>
  <div class="frames">{frames}</div>
  <div class="decisions">
    <div class="decision"><div class="who">ground truth</div>{_arrows(None, example.true_actions)}</div>
    <div class="decision"><div class="who">prediction</div>{_arrows(action_outcomes, None)}</div>
  </div>
  {_reason_list(reason_outcomes)}
  <div class="text"><b>predicted description:</b> {html.escape(example.parsed.description) or '<span class="none">none</span>'}</div>
  <div class="text"><b>reference description:</b> {html.escape(example.reference_description) or '<span class="none">none</span>'}</div>
  <div class="text"><b>justification:</b> {html.escape(example.parsed.justification) or '<span class="none">none</span>'}</div>
  {notes}
  <details><summary>raw answer</summary><pre>{html.escape(example.raw_text)}</pre></details>
</div>"""


def render_gallery(examples: Sequence[GalleryExample], title: str = "SmolDrive answers", subtitle: str = "",
                   thumb_height: int = DEFAULT_THUMB_HEIGHT) -> str:
    """The whole page as one HTML string (no external files: images are inline)."""
    def item(content: str) -> str:
        return f'<span class="item">{content}</span>'

    pill = 'style="padding:2px 7px;border-radius:10px"'
    legend = (
        '<div class="legend"><div>'
        + "".join(item(f"{ARROWS[a.key]} {html.escape(a.phrase)}") for a in ACTIONS)
        + "</div><div style=\"margin-top:6px\"><b>ground truth:</b> "
        + item('<span class="arrow on">↑</span> possible')
        + "<b>prediction:</b> "
        + item('<span class="arrow tp">↑</span> predicted, true')
        + item('<span class="arrow fp">↑</span> predicted, not true')
        + item('<span class="arrow fn">↑</span> true, missed')
        + "<b>reasons:</b> "
        + item(f'<span class="reason tp" {pill}>true positive</span>')
        + item(f'<span class="reason fp" {pill}>false positive</span>')
        + item(f'<span class="reason fn" {pill}>false negative</span>')
        + "</div></div>"
    )
    cards = "".join(render_card(example, thumb_height) for example in examples)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{STYLE}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<div class="meta">{html.escape(subtitle)}</div>
{legend}
<div class="grid">{cards}</div>
</body></html>
"""


def write_gallery(examples: Sequence[GalleryExample], out_path: str | Path, title: str = "SmolDrive answers",
                  subtitle: str = "", thumb_height: int = DEFAULT_THUMB_HEIGHT) -> Path:
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(render_gallery(examples, title, subtitle, thumb_height), encoding="utf-8")
    return out_path


def spread_indices(total: int, count: int) -> list[int]:
    """``count`` row indices spread evenly over ``total`` rows (all rows when there are fewer)."""
    if count <= 0 or total <= 0:
        return []
    if count >= total:
        return list(range(total))
    return sorted({round(i * (total - 1) / (count - 1)) for i in range(count)}) if count > 1 else [0]
