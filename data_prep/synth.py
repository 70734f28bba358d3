"""A synthetic driving world written to disk in the exact layout of a BDD-OIA release.

Each clip is a short sequence of frames of a road seen from the driver. What is drawn is decided
first, as categorical *scene facts* (traffic light state, a car ahead, a pedestrian, the lane lines
on each side, ...); the labels follow from those facts by fixed causal rules (:func:`scene_labels`)
and the reference description is written from them (:func:`describe`). Only then is the scene laid
out (positions, colours, motion) and drawn, so every label has a visible cause in the last frame.

Cues are drawn large and in saturated, mutually distinct colours because the model that learns
from this world sees frames downscaled to 64 px on the longest edge: a red lamp, a magenta
pedestrian, a cyan rider, an orange cone, a yellow blinker each survive as a blob of a few pixels.
Object sizes are exaggerated on purpose for the same reason.

Layout written under ``<root>`` (see the team brief, "Synthetic world on disk")::

    data/<id>.jpg                             the last frame of each clip
    {train,val,test}_25k_images_actions.json  {"images": [...], "annotations": [...]}
    {train,val,test}_25k_images_reasons.json  [{"file_name", "reason"}]
    clips/<id>/000.jpg ... NNN.jpg            clip frames in time order
    descriptions.json                         {"<id>": "reference description"}
    videos/<id>.mp4                           with --videos
    truth.json                                the generator's own labels (for tests)
    synth_config.json                         the seed and WorldConfig used

CLI: ``python -m data_prep.synth --out DIR --clips N --seed S [--frames 5 --num-proc 2 --videos]``.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import multiprocessing
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from taxonomy.labels import (
    ACTION_KEYS,
    DEFAULT_REASON_ORDER,
    REASON_KEYS,
    actions_to_vector,
    inconsistent_reasons,
    load_reason_order,
    reasons_to_vector,
)

SPLITS = ("train", "val", "test")
ID_PREFIX = "synth-"
ID_DIGITS = 6  # "synth-000123"; more digits are used automatically past a million clips
ACTIONS_FILE = "{split}_25k_images_actions.json"
REASONS_FILE = "{split}_25k_images_reasons.json"
TRUTH_FILE = "truth.json"
DESCRIPTIONS_FILE = "descriptions.json"
CONFIG_FILE = "synth_config.json"

# Salts that separate the random streams drawn from one --seed (clip i uses [seed, CLIP, i]).
_SALT_CLIP, _SALT_SPLIT, _SALT_FILES = 1, 2, 3

# Categorical scene facts.
LIGHT_STATES = ("none", "red", "green", "left_arrow", "right_arrow")
STOP_LIGHTS = ("red", "left_arrow", "right_arrow")  # a lit red lamp: forward is not allowed
CAR_AHEAD = ("none", "moderate", "close")
TURNING = ("none", "left", "right")
OTHER_OBSTACLES = ("none", "cone", "box")
EGO_LANES = ("straight", "left_turn", "right_turn")
SIDES = ("dashed", "solid", "edge")  # the boundary of the ego lane: a lane beyond it, or road edge


def _knob(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


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


@dataclass
class ClipTruth:
    """The generator's labels for one clip (what a reader should recover from the files)."""

    id: str
    split: str
    actions: list[int]  # [F, S, L, R]
    reasons: list[int]  # 21 ints, canonical order (taxonomy.labels.REASON_KEYS)
    description: str
    confuse: bool
    annotation_id: int = -1  # the int "id" joining images and annotations in the actions file
    scene: dict = field(default_factory=dict)  # SceneFacts as a dict

    def to_dict(self) -> dict:
        return asdict(self)


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
    if facts.pedestrian:
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


# ---------------------------------------------------------------------------------------------
# Geometry of the world (metres) and the camera. Sizes are exaggerated so cues survive 64 px.

LANE_WIDTH = 3.6
CAMERA_HEIGHT = 1.5
FOCAL_WIDTHS = 0.8  # focal length in image widths (a ~64 degree horizontal field of view)
HORIZON_FRACTION = 0.55  # horizon row as a fraction of the image height
HORIZON_JITTER = 0.02  # per-clip jitter of the horizon row, fraction of the height
NEAR_CLIP_Z = 1.0  # ground drawn from here (behind the bottom edge of the image)
ROAD_FAR_Z = 400.0
LINE_FAR_Z = 120.0  # dashes beyond this are sub-pixel
LINE_WIDTH = 0.30  # wide lane marks: a solid line stays a continuous stripe at 64 px
DASH_LENGTH, DASH_GAP = 2.5, 3.5
CAR_WIDTH, CAR_HEIGHT = 2.0, 1.6
PERSON_WIDTH, PERSON_HEIGHT = 0.8, 1.9
WHEEL_RADIUS, WHEEL_BASE = 0.38, 1.1
CONE_WIDTH, CONE_HEIGHT = 0.7, 0.9
BOX_WIDTH, BOX_HEIGHT = 0.9, 0.7
LIGHT_HOUSING = (1.6, 2.8)  # width, height
LIGHT_BOTTOM = 3.5  # height of the housing's lower edge above the road
LAMP_RADIUS = 0.6
STOP_SIGN_RADIUS, STOP_SIGN_CENTRE_Y = 0.75, 2.8
POLE_WIDTH = 0.25
BLINKER_SIZE = (0.9, 0.7)  # width, height: a big yellow blob at the car's turning side
BLINKER_OVERHANG = 0.3  # how far the blob sticks out of the car's side
# Where things are at the last frame: (low, high) ranges.
OBSTACLE_Z = (5.8, 7.0)  # pedestrians, riders, cones, boxes in the ego lane
OBSTACLE_SLOTS_X = (-1.1, 0.0, 1.1)  # lateral slots so ego-lane obstacles never hide each other
CAR_CLOSE_Z = (7.5, 9.0)
CAR_MODERATE_Z = (13.0, 18.0)
CAR_CLOSE_APPROACH = 0.6  # m/frame the gap to a close car shrinks
CAR_MODERATE_SPEED = (-0.3, 0.3)  # m/frame of a moderate car relative to the driver
FRONT_CAR_TURN_OFFSET = 1.2  # lateral drift of a turning car by the last frame
SIDE_CAR_Z = (6.5, 12.0)
SIDE_CAR_SPEED = (-0.5, 0.5)
LIGHT_Z = (12.0, 15.0)
LIGHT_X = (-0.5, 2.0)
STOP_SIGN_Z = (10.0, 14.0)
ROADSIDE_OFFSET = 0.9  # sign and light poles stand this far outside the road edge
TURN_ARROW_Z = (4.9, 5.6)  # near end of the painted turn arrow
WALK_SPEED = 0.5  # m/frame, lateral, pedestrians
RIDE_SPEED = 1.0  # m/frame, lateral, cyclists
BUILDING_Z = (45.0, 90.0)
BUILDING_HEIGHT = (6.0, 22.0)
BUILDING_WIDTH = (6.0, 16.0)

# Colours: cues are saturated and distinct from each other and from the background palette.
SKY = (150, 190, 230)
GROUND = (165, 145, 105)  # sandy, so no green outside a lit green lamp
ROAD = (95, 95, 100)
LINE_WHITE = (240, 240, 240)
LAMP_RED_ON, LAMP_RED_OFF = (255, 30, 30), (80, 25, 25)
LAMP_GREEN_ON, LAMP_GREEN_OFF = (30, 235, 70), (25, 70, 35)
HOUSING = (25, 25, 25)
POLE = (60, 60, 60)
STOP_RED = (215, 10, 20)
PERSON_SHIRT, PERSON_LEGS, SKIN = (235, 30, 200), (40, 40, 90), (230, 190, 150)
RIDER_BODY, WHEEL = (0, 200, 235), (20, 20, 20)
CONE_ORANGE = (255, 120, 0)
BOX_BROWN, BOX_TOP = (150, 80, 25), (185, 115, 55)
BLINKER_YELLOW = (255, 225, 0)
TAIL_LIGHT = (120, 25, 25)  # dark: a car's rear must not read as a red traffic lamp
CAR_GLASS, TYRE = (40, 50, 60), (15, 15, 15)
CAR_COLOURS = ((70, 70, 78), (190, 190, 196), (35, 55, 115), (235, 235, 235), (25, 25, 28),
               (95, 110, 120))
TINT_DIVISOR = 4  # per-channel colour jitter is this much smaller than the brightness jitter
BUILDING_COLOURS = ((170, 160, 150), (140, 130, 125), (190, 180, 160), (120, 115, 120),
                    (160, 150, 135))


@dataclass
class _Thing:
    """A drawable at the last frame: kind, lateral x, depth z, per-frame motion, extra params."""

    kind: str
    x: float
    z: float
    dx: float = 0.0  # lateral metres per frame (world motion)
    dz: float = 0.0  # metres per frame the depth changes towards the last frame (negative: nearer)
    params: dict = field(default_factory=dict)


@dataclass
class _Layout:
    horizon_offset: float
    sky: tuple
    ground: tuple
    road: tuple
    dash_phase: float
    things: list[_Thing]


def _jitter(rng: np.random.Generator, colour: tuple, amount: int) -> tuple:
    """Mostly a brightness change: an independent per-channel shift would tint grey roads green."""
    shade = int(rng.integers(-amount, amount + 1))
    tint = amount // TINT_DIVISOR
    return tuple(int(np.clip(c + shade + rng.integers(-tint, tint + 1), 0, 255)) for c in colour)


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def _road_edges(facts: SceneFacts) -> tuple[float, float]:
    half = LANE_WIDTH / 2
    left = -half - (LANE_WIDTH if facts.left_side != "edge" else 0.0)
    right = half + (LANE_WIDTH if facts.right_side != "edge" else 0.0)
    return left, right


def sample_layout(rng: np.random.Generator, facts: SceneFacts, config: WorldConfig) -> _Layout:
    """Positions, colours and motion of everything the facts say is there."""
    still = -config.ego_speed  # a static thing gets ego_speed nearer each frame
    things: list[_Thing] = []
    left_edge, right_edge = _road_edges(facts)

    for _ in range(int(rng.integers(0, config.max_buildings + 1))):
        side = -1 if rng.random() < 0.5 else 1
        edge = left_edge if side < 0 else right_edge
        width = _uniform(rng, BUILDING_WIDTH)
        x = edge + side * (2.0 + width / 2 + _uniform(rng, (0.0, 10.0)))
        things.append(_Thing("building", x, _uniform(rng, BUILDING_Z), dz=still, params={
            "width": width, "height": _uniform(rng, BUILDING_HEIGHT),
            "colour": BUILDING_COLOURS[int(rng.integers(len(BUILDING_COLOURS)))]}))

    if facts.light != "none":
        things.append(_Thing("light", _uniform(rng, LIGHT_X), _uniform(rng, LIGHT_Z), dz=still,
                             params={"state": facts.light, "pole_x": right_edge + ROADSIDE_OFFSET}))
    if facts.stop_sign:
        things.append(_Thing("stop_sign", right_edge + ROADSIDE_OFFSET,
                             _uniform(rng, STOP_SIGN_Z), dz=still))
    if facts.car_ahead != "none":
        if facts.car_ahead == "close":
            z, dz = _uniform(rng, CAR_CLOSE_Z), -CAR_CLOSE_APPROACH
        else:
            z, dz = _uniform(rng, CAR_MODERATE_Z), _uniform(rng, CAR_MODERATE_SPEED)
        turn = facts.front_car_turning
        offset = {"none": 0.0, "left": -FRONT_CAR_TURN_OFFSET, "right": FRONT_CAR_TURN_OFFSET}[turn]
        drift = offset / max(config.frames - 1, 1)
        things.append(_Thing("car", offset, z, dx=drift, dz=dz, params={
            "colour": CAR_COLOURS[int(rng.integers(len(CAR_COLOURS)))], "blinker": turn}))
    for side, blocked in (("left", facts.left_lane_blocked), ("right", facts.right_lane_blocked)):
        if blocked:
            x = -LANE_WIDTH if side == "left" else LANE_WIDTH
            things.append(_Thing("car", x, _uniform(rng, SIDE_CAR_Z), dz=_uniform(rng, SIDE_CAR_SPEED),
                                 params={"colour": CAR_COLOURS[int(rng.integers(len(CAR_COLOURS)))],
                                         "blinker": "none"}))

    obstacles = []
    if facts.pedestrian:
        obstacles.append("person")
    if facts.rider:
        obstacles.append("rider")
    if facts.obstacle_other != "none":
        obstacles.append(facts.obstacle_other)
    slots = rng.permutation(len(OBSTACLE_SLOTS_X))
    for kind, slot in zip(obstacles, slots):
        x = OBSTACLE_SLOTS_X[int(slot)]
        direction = -1 if rng.random() < 0.5 else 1  # crossing right-to-left or left-to-right
        speed = {"person": WALK_SPEED, "rider": RIDE_SPEED}.get(kind, 0.0)
        things.append(_Thing(kind, x, _uniform(rng, OBSTACLE_Z), dx=direction * speed, dz=still,
                             params={"direction": direction}))

    if facts.ego_lane != "straight":
        side = -1 if facts.ego_lane == "left_turn" else 1
        things.append(_Thing("turn_arrow", 0.0, _uniform(rng, TURN_ARROW_Z), dz=still,
                             params={"side": side}))

    jit = config.colour_jitter
    return _Layout(
        horizon_offset=_uniform(rng, (-HORIZON_JITTER, HORIZON_JITTER)),
        sky=_jitter(rng, SKY, jit),
        ground=_jitter(rng, GROUND, jit),
        road=_jitter(rng, ROAD, jit),
        dash_phase=_uniform(rng, (0.0, DASH_LENGTH + DASH_GAP)),
        things=things,
    )


# ---------------------------------------------------------------------------------------------
# Drawing


class _Camera:
    def __init__(self, width: int, height: int, horizon_offset: float):
        self.cx = width / 2
        self.horizon = height * (HORIZON_FRACTION + horizon_offset)
        self.focal = FOCAL_WIDTHS * width

    def point(self, x: float, y: float, z: float) -> tuple[float, float]:
        """Screen position of world point (x right, y up from the road, z ahead)."""
        return self.cx + self.focal * x / z, self.horizon + self.focal * (CAMERA_HEIGHT - y) / z

    def ground_polygon(self, points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
        return [self.point(x, 0.0, z) for x, z in points]

    def box(self, x0: float, x1: float, y0: float, y1: float, z: float) -> list[float]:
        """Screen rectangle [left, top, right, bottom] of an upright world rectangle at depth z."""
        left, bottom = self.point(x0, y0, z)
        right, top = self.point(x1, y1, z)
        return [left, top, right, bottom]

    def disc(self, x: float, y: float, z: float, radius: float) -> list[float]:
        sx, sy = self.point(x, y, z)
        r = self.focal * radius / z
        return [sx - r, sy - r, sx + r, sy + r]


def _ground_strip(cam: _Camera, x0: float, x1: float, z0: float, z1: float) -> list:
    z0 = max(z0, NEAR_CLIP_Z)
    return cam.ground_polygon([(x0, z0), (x1, z0), (x1, z1), (x0, z1)])


def _draw_lines(draw: ImageDraw.ImageDraw, cam: _Camera, facts: SceneFacts, travelled: float) -> None:
    half, w = LANE_WIDTH / 2, LINE_WIDTH / 2
    period = DASH_LENGTH + DASH_GAP
    for boundary, kind in ((-half, facts.left_side), (half, facts.right_side)):
        if kind == "solid":
            draw.polygon(_ground_strip(cam, boundary - w, boundary + w, NEAR_CLIP_Z, LINE_FAR_Z),
                         fill=LINE_WHITE)
        elif kind == "dashed":
            # Dashes are fixed on the road: as the driver moves they slide towards the camera.
            z = NEAR_CLIP_Z - period + (-travelled) % period
            while z < LINE_FAR_Z:
                if z + DASH_LENGTH > NEAR_CLIP_Z:
                    draw.polygon(_ground_strip(cam, boundary - w, boundary + w, z, z + DASH_LENGTH),
                                 fill=LINE_WHITE)
                z += period


def _turn_arrow_points(side: int, z0: float) -> list[tuple[float, float]]:
    """A painted arrow: a shaft along the lane, then a head pointing to `side` (-1 left, +1 right)."""
    shape = [(0.35, 0.0), (0.35, 3.0), (-0.6, 3.0), (-0.6, 3.9), (-1.6, 2.6), (-0.6, 1.3),
             (-0.6, 2.2), (-0.35, 2.2), (-0.35, 0.0)]
    return [(-side * x, z0 + dz) for x, dz in shape]


def _draw_light(draw: ImageDraw.ImageDraw, cam: _Camera, t: _Thing, x: float, z: float) -> None:
    width, height = LIGHT_HOUSING
    top = LIGHT_BOTTOM + height
    pole_x = t.params["pole_x"]
    draw.rectangle(cam.box(pole_x - POLE_WIDTH / 2, pole_x + POLE_WIDTH / 2, 0.0, top + 0.2, z),
                   fill=POLE)
    arm = sorted((pole_x, x))
    draw.rectangle(cam.box(arm[0], arm[1], top, top + 0.2, z), fill=POLE)
    state = t.params["state"]
    draw.rectangle(cam.box(x - width / 2, x + width / 2, LIGHT_BOTTOM, top, z), fill=HOUSING)
    red_on = state in STOP_LIGHTS
    red_y = LIGHT_BOTTOM + 0.75 * height
    green_y = LIGHT_BOTTOM + 0.25 * height
    draw.ellipse(cam.disc(x, red_y, z, LAMP_RADIUS), fill=LAMP_RED_ON if red_on else LAMP_RED_OFF)
    draw.ellipse(cam.disc(x, green_y, z, LAMP_RADIUS),
                 fill=LAMP_GREEN_ON if state == "green" else LAMP_GREEN_OFF)
    if state in ("left_arrow", "right_arrow"):
        side = -1 if state == "left_arrow" else 1
        # An extra arrow section beside the lower lamp, on the side the arrow points to.
        bx = x + side * width
        draw.rectangle(cam.box(bx - width / 2, bx + width / 2, LIGHT_BOTTOM, LIGHT_BOTTOM + height / 2,
                               z), fill=HOUSING)
        r = LAMP_RADIUS
        tip = (bx + side * r, green_y)
        tail_top = (bx - side * r, green_y + r)
        tail_bottom = (bx - side * r, green_y - r)
        draw.polygon([cam.point(px, py, z) for px, py in (tip, tail_top, tail_bottom)],
                     fill=LAMP_GREEN_ON)


def _draw_stop_sign(draw: ImageDraw.ImageDraw, cam: _Camera, x: float, z: float) -> None:
    draw.rectangle(cam.box(x - POLE_WIDTH / 4, x + POLE_WIDTH / 4, 0.0, STOP_SIGN_CENTRE_Y, z),
                   fill=POLE)
    r = STOP_SIGN_RADIUS
    octagon = [(x + r * np.cos(a), STOP_SIGN_CENTRE_Y + r * np.sin(a))
               for a in np.pi / 8 + np.arange(8) * np.pi / 4]
    draw.polygon([cam.point(px, py, z) for px, py in octagon], fill=STOP_RED)
    draw.rectangle(cam.box(x - 0.6 * r, x + 0.6 * r, STOP_SIGN_CENTRE_Y - 0.15 * r,
                           STOP_SIGN_CENTRE_Y + 0.15 * r, z), fill=LINE_WHITE)


def _draw_car(draw: ImageDraw.ImageDraw, cam: _Camera, t: _Thing, x: float, z: float) -> None:
    w, h = CAR_WIDTH, CAR_HEIGHT
    colour = t.params["colour"]
    draw.rectangle(cam.box(x - w / 2 + 0.1, x - w / 2 + 0.5, 0.0, 0.4, z), fill=TYRE)
    draw.rectangle(cam.box(x + w / 2 - 0.5, x + w / 2 - 0.1, 0.0, 0.4, z), fill=TYRE)
    draw.rectangle(cam.box(x - w / 2, x + w / 2, 0.25, 0.62 * h, z), fill=colour)
    draw.rectangle(cam.box(x - 0.42 * w, x + 0.42 * w, 0.62 * h, h, z), fill=colour)
    draw.rectangle(cam.box(x - 0.36 * w, x + 0.36 * w, 0.68 * h, 0.94 * h, z), fill=CAR_GLASS)
    for side in (-1, 1):
        cx = x + side * (w / 2 - 0.25)
        draw.rectangle(cam.box(cx - 0.15, cx + 0.15, 0.4 * h, 0.55 * h, z), fill=TAIL_LIGHT)
    blinker = t.params["blinker"]
    if blinker != "none":
        side = -1 if blinker == "left" else 1
        bw, bh = BLINKER_SIZE
        outer = x + side * (w / 2 + BLINKER_OVERHANG)
        x0, x1 = sorted((outer, outer - side * bw))
        draw.rectangle(cam.box(x0, x1, 0.3 * h, 0.3 * h + bh, z), fill=BLINKER_YELLOW)


def _draw_person(draw: ImageDraw.ImageDraw, cam: _Camera, x: float, z: float) -> None:
    h, w = PERSON_HEIGHT, PERSON_WIDTH
    draw.rectangle(cam.box(x - 0.3 * w, x - 0.05 * w, 0.0, 0.47 * h, z), fill=PERSON_LEGS)
    draw.rectangle(cam.box(x + 0.05 * w, x + 0.3 * w, 0.0, 0.47 * h, z), fill=PERSON_LEGS)
    draw.rectangle(cam.box(x - w / 2, x + w / 2, 0.45 * h, 0.82 * h, z), fill=PERSON_SHIRT)
    draw.ellipse(cam.disc(x, 0.9 * h, z, 0.12 * h), fill=SKIN)


def _draw_rider(draw: ImageDraw.ImageDraw, cam: _Camera, t: _Thing, x: float, z: float) -> None:
    direction = t.params["direction"]
    r = WHEEL_RADIUS
    width = max(1, round(cam.focal * 0.12 / z))
    for wx in (x - WHEEL_BASE / 2, x + WHEEL_BASE / 2):
        draw.ellipse(cam.disc(wx, r, z, r), outline=WHEEL, width=width)
    frame = [(x - WHEEL_BASE / 2, r), (x, r), (x + WHEEL_BASE / 2, r), (x + 0.1 * direction, 2 * r)]
    draw.line([cam.point(px, py, z) for px, py in frame], fill=WHEEL, width=width)
    draw.rectangle(cam.box(x - 0.3, x + 0.3, 0.85, 1.6, z), fill=RIDER_BODY)
    draw.ellipse(cam.disc(x + 0.1 * direction, 1.78, z, 0.2), fill=RIDER_BODY)


def _draw_cone(draw: ImageDraw.ImageDraw, cam: _Camera, x: float, z: float) -> None:
    w, h = CONE_WIDTH, CONE_HEIGHT
    draw.polygon([cam.point(px, py, z) for px, py in ((x - w / 2, 0), (x + w / 2, 0), (x, h))],
                 fill=CONE_ORANGE)
    band = [(x - 0.3 * w, 0.4 * h), (x + 0.3 * w, 0.4 * h), (x + 0.22 * w, 0.55 * h),
            (x - 0.22 * w, 0.55 * h)]
    draw.polygon([cam.point(px, py, z) for px, py in band], fill=LINE_WHITE)


def _draw_box(draw: ImageDraw.ImageDraw, cam: _Camera, x: float, z: float) -> None:
    w, h = BOX_WIDTH, BOX_HEIGHT
    top = [(x - w / 2, h, z), (x + w / 2, h, z), (x + w / 2, h, z + w), (x - w / 2, h, z + w)]
    draw.polygon([cam.point(*p) for p in top], fill=BOX_TOP)
    draw.rectangle(cam.box(x - w / 2, x + w / 2, 0.0, h, z), fill=BOX_BROWN)


def render_frame(facts: SceneFacts, layout: _Layout, config: WorldConfig, frame: int) -> Image.Image:
    """Frame `frame` (0 = first) of the clip; frame config.frames - 1 is the annotated one."""
    width, height = config.width, config.height
    cam = _Camera(width, height, layout.horizon_offset)
    steps_before_last = config.frames - 1 - frame
    image = Image.new("RGB", (width, height), layout.sky)
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, cam.horizon, width, height], fill=layout.ground)
    left_edge, right_edge = _road_edges(facts)
    draw.polygon(_ground_strip(cam, left_edge, right_edge, NEAR_CLIP_Z, ROAD_FAR_Z), fill=layout.road)
    travelled = layout.dash_phase + config.ego_speed * frame
    _draw_lines(draw, cam, facts, travelled)

    placed = []
    for t in layout.things:
        # Positions are defined at the last frame; earlier frames undo the per-frame motion.
        z = t.z - t.dz * steps_before_last
        x = t.x - t.dx * steps_before_last
        if z > NEAR_CLIP_Z:
            placed.append((z, x, t))
    # Painted marks lie under everything; the rest is drawn far to near so near things occlude.
    for z, x, t in placed:
        if t.kind == "turn_arrow":
            draw.polygon(cam.ground_polygon(_turn_arrow_points(t.params["side"], z)), fill=LINE_WHITE)
    for z, x, t in sorted((p for p in placed if p[2].kind != "turn_arrow"), key=lambda p: -p[0]):
        if t.kind == "building":
            draw.rectangle(cam.box(x - t.params["width"] / 2, x + t.params["width"] / 2, 0.0,
                                   t.params["height"], z), fill=t.params["colour"])
        elif t.kind == "light":
            _draw_light(draw, cam, t, x, z)
        elif t.kind == "stop_sign":
            _draw_stop_sign(draw, cam, x, z)
        elif t.kind == "car":
            _draw_car(draw, cam, t, x, z)
        elif t.kind == "person":
            _draw_person(draw, cam, x, z)
        elif t.kind == "rider":
            _draw_rider(draw, cam, t, x, z)
        elif t.kind == "cone":
            _draw_cone(draw, cam, x, z)
        elif t.kind == "box":
            _draw_box(draw, cam, x, z)
    return image


def render_clip(facts: SceneFacts, layout: _Layout, config: WorldConfig) -> list[Image.Image]:
    return [render_frame(facts, layout, config, i) for i in range(config.frames)]


def make_clip(seed: int, index: int, config: WorldConfig) -> tuple[SceneFacts, list[Image.Image]]:
    """The facts and frames of clip `index` (a pure function of seed, index and config)."""
    rng = np.random.default_rng([seed, _SALT_CLIP, index])
    facts = sample_facts(rng, config)
    layout = sample_layout(rng, facts, config)
    return facts, render_clip(facts, layout, config)


# ---------------------------------------------------------------------------------------------
# Writing


def clip_id(index: int) -> str:
    return f"{ID_PREFIX}{index:0{ID_DIGITS}d}"


def _jpeg_bytes(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _write_video(path: Path, frames: Sequence[Image.Image], config: WorldConfig) -> None:
    import av  # only needed with --videos

    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream(config.video_codec, rate=config.video_fps)
        stream.width, stream.height = config.width, config.height
        stream.pix_fmt = "yuv420p"
        stream.thread_count = 1  # workers already use every core
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_image(image)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _write_clip(task: tuple[int, str, bool], root: Path, seed: int, config: WorldConfig,
                videos: bool) -> dict:
    """Render clip `index` and write its frames; return its truth record."""
    index, split, confuse = task
    cid = clip_id(index)
    facts, frames = make_clip(seed, index, config)
    actions, reasons = scene_labels(facts)
    frame_dir = root / "clips" / cid
    frame_dir.mkdir(parents=True, exist_ok=True)
    data = b""
    for i, image in enumerate(frames):
        data = _jpeg_bytes(image, config.jpeg_quality)
        (frame_dir / f"{i:03d}.jpg").write_bytes(data)
    (root / "data" / f"{cid}.jpg").write_bytes(data)  # the annotated last frame, same bytes
    if videos:
        _write_video(root / "videos" / f"{cid}.mp4", frames, config)
    return ClipTruth(
        id=cid,
        split=split,
        actions=actions_to_vector(actions),
        reasons=reasons_to_vector(reasons),
        description=describe(facts),
        confuse=confuse,
        scene=asdict(facts),
    ).to_dict()


def _assign_splits(num_clips: int, seed: int, config: WorldConfig) -> tuple[list[str], list[bool]]:
    rng = np.random.default_rng([seed, _SALT_SPLIT])
    n_train = round(num_clips * config.train_fraction)
    n_val = min(round(num_clips * config.val_fraction), num_clips - n_train)
    order = rng.permutation(num_clips)
    split_of = [""] * num_clips
    for rank, index in enumerate(order):
        split_of[int(index)] = "train" if rank < n_train else "val" if rank < n_train + n_val else "test"
    n_confuse = round(num_clips * config.confuse_fraction)
    if config.confuse_fraction > 0:
        n_confuse = max(1, n_confuse)  # so the readers' drop path is always exercised
    confuse = [False] * num_clips
    for index in rng.choice(num_clips, size=min(n_confuse, num_clips), replace=False):
        confuse[int(index)] = True
    return split_of, confuse


def _write_annotations(root: Path, truths: list[ClipTruth], seed: int, config: WorldConfig) -> None:
    """The six BDD-OIA annotation files; fills in each truth's annotation_id."""
    order_b = load_reason_order(DEFAULT_REASON_ORDER)
    for split_index, split in enumerate(SPLITS):
        rng = np.random.default_rng([seed, _SALT_FILES, split_index])
        members = [t for t in truths if t.split == split]
        ids = config.annotation_id_offset + rng.permutation(len(members))
        images, annotations, reasons = [], [], []
        for truth, ann_id in zip(members, ids):
            truth.annotation_id = int(ann_id)
            images.append({"file_name": f"{truth.id}.jpg", "id": int(ann_id),
                           "height": config.height, "width": config.width})
            category = list(truth.actions)
            if truth.confuse:
                category.append(1)
            elif rng.random() < config.explicit_zero_confuse_fraction:
                category.append(0)
            annotations.append({"id": int(ann_id), "category": category})
            # Reasons are stored in file order B, which maps canonical keys to positions.
            keys = [REASON_KEYS[i] for i, v in enumerate(truth.reasons) if v]
            reasons.append({"file_name": f"{truth.id}.jpg", "reason": reasons_to_vector(keys, order_b)})
        annotations = [annotations[int(i)] for i in rng.permutation(len(annotations))]
        reasons = [reasons[int(i)] for i in rng.permutation(len(reasons))]
        _write_json(root / ACTIONS_FILE.format(split=split), {"images": images,
                                                              "annotations": annotations})
        _write_json(root / REASONS_FILE.format(split=split), reasons)


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False) + "\n")


def _check_consistent(truth: ClipTruth) -> None:
    actions = [k for k, v in zip(ACTION_KEYS, truth.actions) if v]
    reasons = [k for k, v in zip(REASON_KEYS, truth.reasons) if v]
    bad = inconsistent_reasons(actions, reasons)
    if bad:  # a bug in scene_labels, never a property of the data
        raise AssertionError(f"clip {truth.id}: reasons {bad} contradict actions {actions}")


def _prepare_output(root: Path, overwrite: bool) -> Path:
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"{root} exists and is not a directory")
    if root.is_dir() and any(root.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{root} exists and is not empty; refusing to overwrite it (pass --overwrite, or "
            "overwrite=True, to replace it once the new world is complete)"
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = root.parent / f".{root.name}.partial-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    for sub in ("data", "clips"):
        (staging / sub).mkdir(parents=True)
    return staging


def _publish(staging: Path, root: Path) -> None:
    """Move the finished world into place; an old one is removed only after the new one is in."""
    old = None
    if root.exists():
        old = root.parent / f".{root.name}.old-{os.getpid()}"
        root.rename(old)
    staging.rename(root)
    if old is not None:
        shutil.rmtree(old)


def generate(
    root: str | Path,
    num_clips: int,
    seed: int = 0,
    config: WorldConfig = WorldConfig(),
    num_proc: int = 1,
    videos: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> list[ClipTruth]:
    """Write a synthetic BDD-OIA release of `num_clips` clips under `root`; return the truth.

    Deterministic in (num_clips, seed, config): the same arguments give byte-identical annotation
    files and frames whatever `num_proc`. The world is written into a staging folder beside `root`
    and renamed into place at the end, so an interrupted run leaves `root` as it was.
    """
    if num_clips < 1:
        raise ValueError(f"num_clips={num_clips} must be >= 1")
    root = Path(root)
    staging = _prepare_output(root, overwrite)
    try:
        if videos:
            if config.width % 2 or config.height % 2:
                raise ValueError(f"--videos needs an even frame size, got {config.width}x{config.height}")
            (staging / "videos").mkdir()
        split_of, confuse = _assign_splits(num_clips, seed, config)
        tasks = [(i, split_of[i], confuse[i]) for i in range(num_clips)]
        worker = functools.partial(_write_clip, root=staging, seed=seed, config=config, videos=videos)
        bar = tqdm(total=num_clips, desc="synth clips", unit="clip", disable=not progress)
        records = []
        if num_proc > 1:
            chunk = max(1, min(64, num_clips // (num_proc * 8)))
            with multiprocessing.Pool(num_proc) as pool:
                for record in pool.imap(worker, tasks, chunksize=chunk):
                    records.append(record)
                    bar.update()
        else:
            for task in tasks:
                records.append(worker(task))
                bar.update()
        bar.close()
        truths = [ClipTruth(**r) for r in records]
        for truth in truths:
            _check_consistent(truth)
        _write_annotations(staging, truths, seed, config)
        _write_json(staging / DESCRIPTIONS_FILE, {t.id: t.description for t in truths})
        _write_json(staging / TRUTH_FILE, [t.to_dict() for t in truths])
        _write_json(staging / CONFIG_FILE, {"seed": seed, "num_clips": num_clips,
                                            "config": asdict(config)})
        _publish(staging, root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return truths


def load_truth(root: str | Path) -> list[ClipTruth]:
    """The generator's truth records written beside a synthetic world."""
    path = Path(root) / TRUTH_FILE
    return [ClipTruth(**r) for r in json.loads(path.read_text())]


def label_rates(truths: Sequence[ClipTruth]) -> dict[str, float]:
    """Fraction of clips with each action and reason set."""
    n = max(len(truths), 1)
    rates = {k: sum(t.actions[i] for t in truths) / n for i, k in enumerate(ACTION_KEYS)}
    rates.update({k: sum(t.reasons[i] for t in truths) / n for i, k in enumerate(REASON_KEYS)})
    return rates


# ---------------------------------------------------------------------------------------------
# CLI


def _config_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("world (WorldConfig fields)")
    defaults = WorldConfig()
    for f in fields(WorldConfig):
        default = getattr(defaults, f.name)
        group.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=type(default),
                           default=default, help=f"{f.metadata.get('help', '')} (default {default})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m data_prep.synth",
        description="Write a synthetic driving world in the BDD-OIA release layout.",
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder (the release root)")
    parser.add_argument("--clips", required=True, type=int, help="number of clips")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--num-proc", type=int, default=max(1, (os.cpu_count() or 1)),
                        help="rendering processes (default: all cores)")
    parser.add_argument("--videos", action="store_true", help="also write videos/<id>.mp4 per clip")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a non-empty --out (only after the new world is complete)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    _config_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = WorldConfig(**{f.name: getattr(args, f.name) for f in fields(WorldConfig)})
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        truths = generate(args.out, args.clips, seed=args.seed, config=config,
                          num_proc=args.num_proc, videos=args.videos, overwrite=args.overwrite,
                          progress=not args.no_progress)
    except (FileExistsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start
    counts = {s: sum(t.split == s for t in truths) for s in SPLITS}
    rates = label_rates(truths)
    print(f"wrote {len(truths)} clips to {args.out} in {seconds:.1f} s "
          f"({len(truths) / seconds:.1f} clips/s, {args.num_proc} processes)")
    print("splits: " + ", ".join(f"{s} {n}" for s, n in counts.items())
          + f"; confuse {sum(t.confuse for t in truths)}")
    print("actions: " + ", ".join(f"{k} {rates[k]:.2f}" for k in ACTION_KEYS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
