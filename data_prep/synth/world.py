"""The world model: its knobs, the categorical scene facts of a clip, how they are sampled, and
the labels and reference description that follow from them.

What is drawn is decided here first, as categorical *scene facts* (traffic light state, a car ahead,
a pedestrian, the lane lines on each side, ...); the labels follow from those facts by fixed causal
rules (:func:`scene_labels`) and the reference description is written from them (:func:`describe`).
Nothing here knows pixels or files: :mod:`.render` lays the facts out and draws them, :mod:`.release`
writes them to disk.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Sequence

import numpy as np

# Salts that separate the random streams drawn from one --seed (clip i uses [seed, CLIP, i]).
SALT_CLIP, SALT_SPLIT, SALT_FILES = 1, 2, 3

# Categorical scene facts.
LIGHT_STATES = ("none", "red", "green", "left_arrow", "right_arrow")
STOP_LIGHTS = ("red", "left_arrow", "right_arrow")  # a lit red lamp: forward is not allowed
CAR_AHEAD = ("none", "moderate", "close")
TURNING = ("none", "left", "right")
OTHER_OBSTACLES = ("none", "cone", "box")
EGO_LANES = ("straight", "left_turn", "right_turn")
SIDES = ("dashed", "solid", "edge")  # the boundary of the ego lane: a lane beyond it, or road edge
# The temporal world only: a pedestrian at the kerb who waits, or walks towards the road.
KERB_PEDESTRIAN = ("none", "waiting", "stepping")


def _knob(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


def _temporal_knob(default: Any, help: str) -> Any:
    """A field of the temporal world: written to disk only when set (see :func:`as_written`)."""
    return field(default=default, metadata={"help": help, "temporal_world": True})


def as_written(obj: Any) -> dict:
    """``asdict(obj)`` less the temporal-world fields left at their default, so a default world's
    files stay byte-identical to those written before the temporal world existed."""
    out = asdict(obj)
    for f in fields(obj):
        if f.metadata.get("temporal_world") and out[f.name] == f.default:
            del out[f.name]
    return out


@dataclass(frozen=True)
class WorldConfig:
    """Every knob of the world. Probabilities are per clip and independent unless said otherwise.

    The defaults approximate BDD-OIA's label frequencies (FACTS.md, Table 1 counts over 22,924
    clips): forward and stop each about half the clips, turns rare, the "cannot turn" reasons
    frequent (about 10-27% each).
    """

    # rendering
    frames: int = _knob(5, "frames per clip (M); the last one is the annotated frame")
    width: int = _knob(256, "written frame width in pixels")
    height: int = _knob(144, "written frame height in pixels")
    jpeg_quality: int = _knob(90, "JPEG quality of written frames (1-95)")
    video_fps: int = _knob(5, "frame rate of --videos files")
    video_codec: str = _knob("libx264", "PyAV codec of --videos files")
    ego_speed: float = _knob(1.0, "metres the driver moves between frames (static things approach)")
    colour_jitter: int = _knob(12, "max per-channel jitter of sky, road and ground colours")
    max_buildings: int = _knob(6, "max background buildings (distractors with no label)")
    # splits and annotation-file quirks
    train_fraction: float = _knob(0.70, "fraction of clips in train (BDD-OIA: 16,082 of 22,924)")
    val_fraction: float = _knob(0.10, "fraction in val (BDD-OIA: 2,270); test gets the rest")
    confuse_fraction: float = _knob(
        0.004, "fraction of 'confuse' samples (5th category entry 1; at least one when > 0)"
    )
    explicit_zero_confuse_fraction: float = _knob(
        0.5, "fraction of other samples whose category is written with a 5th entry 0"
    )
    annotation_id_offset: int = _knob(1000, "smallest annotation id (ids are shuffled from it)")
    # traffic control
    p_light_red: float = _knob(0.20, "traffic light showing red")
    p_light_green: float = _knob(0.30, "traffic light showing green")
    p_light_left_arrow: float = _knob(0.04, "red light with a green left arrow")
    p_light_right_arrow: float = _knob(0.04, "red light with a green right arrow")
    p_stop_sign: float = _knob(0.04, "stop sign at the roadside")
    # the ego lane
    p_car_close: float = _knob(0.18, "car close ahead in the ego lane (stop: obstacle car)")
    p_car_moderate: float = _knob(0.40, "car at a moderate distance ahead (follow traffic)")
    p_front_car_turning_left: float = _knob(0.10, "given a car ahead: it signals and drifts left")
    p_front_car_turning_right: float = _knob(0.10, "given a car ahead: it signals and drifts right")
    p_pedestrian: float = _knob(0.07, "pedestrian crossing in the ego lane")
    p_rider: float = _knob(0.03, "cyclist crossing in the ego lane")
    p_obstacle_other: float = _knob(0.03, "cone or box in the ego lane")
    p_left_turn_lane: float = _knob(0.04, "ego lane is a left-turn lane (painted arrow)")
    p_right_turn_lane: float = _knob(0.05, "ego lane is a right-turn lane (painted arrow)")
    # the sides
    p_no_left_lane: float = _knob(0.20, "road edge on the left of the ego lane")
    p_solid_line_left: float = _knob(0.16, "a left lane behind a solid line")
    p_left_lane_blocked: float = _knob(0.25, "given a left lane: a car in it, alongside")
    p_no_right_lane: float = _knob(0.175, "road edge on the right of the ego lane")
    p_solid_line_right: float = _knob(0.095, "a right lane behind a solid line")
    p_right_lane_blocked: float = _knob(0.32, "given a right lane: a car in it, alongside")
    # the temporal world: causes that show only across frames, never in the last one
    temporal: bool = _temporal_knob(
        False, "some causes show only across frames: a turning front car signals by blinking (its "
        "blinker off in the last frame) and has not drifted yet; a pedestrian at the kerb walks "
        "towards the road (stop) or waits (no label), standing on the same spot in the last frame"
    )
    p_kerb_pedestrian: float = _temporal_knob(
        0.3, "temporal world: a pedestrian at the kerb (waiting or stepping towards the road)"
    )
    p_kerb_pedestrian_stepping: float = _temporal_knob(
        0.5, "temporal world: given a kerb pedestrian, it steps towards the road (stop) rather than waits"
    )

    def __post_init__(self) -> None:
        problems = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.startswith("p_") or f.name.endswith("_fraction"):
                if not 0.0 <= value <= 1.0:
                    problems.append(f"{f.name}={value} is not a probability in [0, 1]")
        groups = {
            "traffic light states": ("p_light_red", "p_light_green", "p_light_left_arrow",
                                     "p_light_right_arrow"),
            "car ahead distances": ("p_car_close", "p_car_moderate"),
            "front car turning sides": ("p_front_car_turning_left", "p_front_car_turning_right"),
            "turn lanes": ("p_left_turn_lane", "p_right_turn_lane"),
            "left side kinds": ("p_no_left_lane", "p_solid_line_left"),
            "right side kinds": ("p_no_right_lane", "p_solid_line_right"),
            "split fractions": ("train_fraction", "val_fraction"),
        }
        for what, names in groups.items():
            total = sum(getattr(self, n) for n in names)
            if total > 1.0 + 1e-9:
                problems.append(f"{' + '.join(names)} = {total:.3f} > 1 ({what} are exclusive)")
        if self.frames < 1:
            problems.append(f"frames={self.frames} must be >= 1")
        if self.width < 16 or self.height < 16:
            problems.append(f"frame size {self.width}x{self.height} is below 16x16")
        if not 1 <= self.jpeg_quality <= 100:
            problems.append(f"jpeg_quality={self.jpeg_quality} is not in 1..100")
        if self.video_fps < 1:
            problems.append(f"video_fps={self.video_fps} must be >= 1")
        if self.annotation_id_offset < 0:
            problems.append(f"annotation_id_offset={self.annotation_id_offset} must be >= 0")
        if problems:
            raise ValueError("invalid WorldConfig: " + "; ".join(problems))


@dataclass(frozen=True)
class SceneFacts:
    """What a clip shows, as categories. Labels and the description are functions of this alone."""

    light: str  # LIGHT_STATES
    stop_sign: bool
    car_ahead: str  # CAR_AHEAD
    front_car_turning: str  # TURNING; "none" when there is no car ahead
    pedestrian: bool
    rider: bool
    obstacle_other: str  # OTHER_OBSTACLES
    ego_lane: str  # EGO_LANES
    left_side: str  # SIDES
    right_side: str  # SIDES
    left_lane_blocked: bool  # always False when left_side == "edge"
    right_lane_blocked: bool
    # temporal world only (KERB_PEDESTRIAN); "stepping" is a stop cause seen only across frames
    kerb_pedestrian: str = _temporal_knob("none", "KERB_PEDESTRIAN")


# ---------------------------------------------------------------------------------------------
# Facts -> labels, description


def scene_labels(facts: SceneFacts) -> tuple[list[str], list[str]]:
    """(action keys, reason keys) that follow from the facts.

    Stop when any stop cause holds, else forward. A turn is possible when a can-turn reason holds
    and no cannot-turn reason does; can-turn reasons are labelled only for a possible turn,
    cannot-turn reasons whenever they hold (as BDD-OIA does), so the labels are always consistent.
    """
    stop_causes = []
    if facts.car_ahead == "close":
        stop_causes.append("obstacle_car")
    if facts.pedestrian or facts.kerb_pedestrian == "stepping":
        stop_causes.append("obstacle_person")
    if facts.rider:
        stop_causes.append("obstacle_rider")
    if facts.obstacle_other != "none":
        stop_causes.append("obstacle_other")
    if facts.light in STOP_LIGHTS:
        stop_causes.append("stop_traffic_light")
    if facts.stop_sign:
        stop_causes.append("stop_traffic_sign")

    actions: list[str] = []
    reasons: list[str] = []
    if stop_causes:
        actions.append("stop")
        reasons += stop_causes
    else:
        actions.append("forward")
        if facts.car_ahead == "moderate":
            reasons.append("follow_traffic")
        else:  # nothing in the ego lane ahead (a close car would be a stop cause)
            reasons.append("road_clear")
        if facts.light == "green":
            reasons.append("green_light")

    for side, other in (("left", facts.left_side), ("right", facts.right_side)):
        can = []
        if facts.front_car_turning == side:
            can.append(f"front_car_turning_{side}")
        if facts.ego_lane == f"{side}_turn":
            can.append(f"on_{side}_turn_lane")
        if facts.light == f"{side}_arrow":
            can.append(f"light_allows_{side}")
        cannot = []
        if getattr(facts, f"{side}_lane_blocked"):
            cannot.append(f"{side}_lane_blocked")
        if other == "edge":
            cannot.append(f"no_{side}_lane")
        if other == "solid":
            cannot.append(f"solid_line_{side}")
        if can and not cannot:
            actions.append(side)
            reasons += can
        reasons += cannot
    return actions, reasons


def temporal_reasons(facts: SceneFacts, config: WorldConfig) -> list[str]:
    """The clip's reasons whose only cause lies in frames before the last (the temporal world's
    blinking front car and kerb pedestrian stepping towards the road); [] in the default world."""
    if not config.temporal:
        return []
    reasons = scene_labels(facts)[1]
    out = [r for r in reasons if r == f"front_car_turning_{facts.front_car_turning}"]
    if facts.kerb_pedestrian == "stepping" and not facts.pedestrian:  # else a crossing one shows it
        out.append("obstacle_person")
    return out


def _join(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


_LANE_COUNT_WORDS = {1: "A single-lane road", 2: "A two-lane road", 3: "A three-lane road"}
_LIGHT_PHRASES = {
    "red": "a red traffic light",
    "green": "a green traffic light",
    "left_arrow": "a red light with a green left arrow",
    "right_arrow": "a red light with a green right arrow",
}


def describe(facts: SceneFacts) -> str:
    """A short reference description written from the facts (what CLIP rewards compare with)."""
    lanes = 1 + (facts.left_side != "edge") + (facts.right_side != "edge")
    road = _LANE_COUNT_WORDS[lanes]
    if facts.ego_lane != "straight":
        road += f", driving in the {facts.ego_lane.replace('_', '-')} lane,"
    ahead = []
    if facts.light != "none":
        ahead.append(_LIGHT_PHRASES[facts.light])
    if facts.stop_sign:
        ahead.append("a stop sign")
    if facts.car_ahead != "none":
        car = "a car close ahead" if facts.car_ahead == "close" else "a car further ahead"
        if facts.front_car_turning != "none":
            car += f" signalling {facts.front_car_turning}"
        ahead.append(car)
    if facts.pedestrian:
        ahead.append("a pedestrian crossing")
    if facts.kerb_pedestrian == "stepping":
        ahead.append("a pedestrian stepping off the kerb")
    elif facts.kerb_pedestrian == "waiting":
        ahead.append("a pedestrian waiting at the kerb")
    if facts.rider:
        ahead.append("a cyclist crossing")
    if facts.obstacle_other == "cone":
        ahead.append("a traffic cone in the lane")
    elif facts.obstacle_other == "box":
        ahead.append("a box on the road")
    if not ahead:
        ahead.append("an empty lane ahead")
    sides = []
    for side, kind, blocked in (
        ("left", facts.left_side, facts.left_lane_blocked),
        ("right", facts.right_side, facts.right_lane_blocked),
    ):
        if kind == "edge":
            sides.append(f"the road edge on the {side}")
        else:
            phrase = f"a {kind} line on the {side}"
            if blocked:
                phrase += f" with a car in the {side} lane"
            sides.append(phrase)
    return f"{road} with {_join(ahead)}; {_join(sides)}."


# ---------------------------------------------------------------------------------------------
# Sampling


def _pick(rng: np.random.Generator, options: Sequence[str], probs: Sequence[float]) -> str:
    """One of options[1:] with the given probabilities, else options[0] (the remainder)."""
    u = rng.random()
    for option, p in zip(options[1:], probs):
        if u < p:
            return option
        u -= p
    return options[0]


def sample_facts(rng: np.random.Generator, config: WorldConfig) -> SceneFacts:
    c = config
    light = _pick(rng, LIGHT_STATES, (c.p_light_red, c.p_light_green, c.p_light_left_arrow,
                                      c.p_light_right_arrow))
    stop_sign = bool(rng.random() < c.p_stop_sign)
    car_ahead = _pick(rng, CAR_AHEAD, (c.p_car_moderate, c.p_car_close))
    turning = _pick(rng, TURNING, (c.p_front_car_turning_left, c.p_front_car_turning_right))
    pedestrian = bool(rng.random() < c.p_pedestrian)
    rider = bool(rng.random() < c.p_rider)
    other = "none"
    if rng.random() < c.p_obstacle_other:
        other = OTHER_OBSTACLES[1 + int(rng.integers(2))]
    ego_lane = _pick(rng, EGO_LANES, (c.p_left_turn_lane, c.p_right_turn_lane))
    left = _pick(rng, SIDES, (c.p_solid_line_left, c.p_no_left_lane))
    right = _pick(rng, SIDES, (c.p_solid_line_right, c.p_no_right_lane))
    left_blocked = bool(rng.random() < c.p_left_lane_blocked)
    right_blocked = bool(rng.random() < c.p_right_lane_blocked)
    kerb = "none"
    if c.temporal and rng.random() < c.p_kerb_pedestrian:  # no draw at all in the default world
        kerb = "stepping" if rng.random() < c.p_kerb_pedestrian_stepping else "waiting"
    return SceneFacts(
        light=light,
        stop_sign=stop_sign,
        car_ahead=car_ahead,
        front_car_turning=turning if car_ahead != "none" else "none",
        pedestrian=pedestrian,
        rider=rider,
        obstacle_other=other,
        ego_lane=ego_lane,
        left_side=left,
        right_side=right,
        left_lane_blocked=left_blocked and left != "edge",
        right_lane_blocked=right_blocked and right != "edge",
        kerb_pedestrian=kerb,
    )


def expected_action_rates(config: WorldConfig) -> dict[str, float]:
    """The fraction of clips that should get each action, computed from the knobs in closed form.

    Independent of the sampler and the labelling code, so comparing it with generated labels
    checks both.
    """
    c = config
    no_stop = (
        (1 - c.p_light_red - c.p_light_left_arrow - c.p_light_right_arrow)
        * (1 - c.p_stop_sign)
        * (1 - c.p_car_close)
        * (1 - c.p_pedestrian)
        * (1 - c.p_rider)
        * (1 - c.p_obstacle_other)
        * (1 - c.temporal * c.p_kerb_pedestrian * c.p_kerb_pedestrian_stepping)
    )
    car_ahead = c.p_car_close + c.p_car_moderate
    rates = {"forward": no_stop, "stop": 1 - no_stop}
    for side in ("left", "right"):
        no_can = (
            (1 - getattr(c, f"p_light_{side}_arrow"))
            * (1 - getattr(c, f"p_{side}_turn_lane"))
            * (1 - car_ahead * getattr(c, f"p_front_car_turning_{side}"))
        )
        lane_free = (1 - getattr(c, f"p_no_{side}_lane") - getattr(c, f"p_solid_line_{side}")) * (
            1 - getattr(c, f"p_{side}_lane_blocked")
        )
        rates[side] = (1 - no_can) * lane_free
    return rates
