"""The renderer: a clip's facts laid out in metres (positions, colours, motion), a pinhole camera
and the drawing of each frame.

Cues are drawn large and in saturated, mutually distinct colours because the model that learns
from this world sees frames downscaled to 64 px on the longest edge: a red lamp, a magenta
pedestrian, a cyan rider, an orange cone, a yellow blinker each survive as a blob of a few pixels.
Object sizes are exaggerated on purpose for the same reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from data_prep.synth.world import SALT_CLIP, STOP_LIGHTS, SceneFacts, WorldConfig, sample_facts

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
# The temporal world. A blinker is lit except every BLINK_PERIOD-th frame counted back from the
# last, which is dark: any M >= 2 frames at stride 1 or 2 see it lit at least once, M = 1 never.
BLINK_PERIOD = 3
KERB_OFFSET = 0.5  # a kerb pedestrian stands this far outside the road edge in the last frame
KERB_PEDESTRIAN_Z = (11.0, 13.0)  # far enough to be in view beside a three-lane road
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
        if config.temporal:  # it only signals (blinking) and has not started to drift
            offset = 0.0
        drift = offset / max(config.frames - 1, 1)
        things.append(_Thing("car", offset, z, dx=drift, dz=dz, params={
            "colour": CAR_COLOURS[int(rng.integers(len(CAR_COLOURS)))], "blinker": turn,
            "blinking": config.temporal}))
    for side, blocked in (("left", facts.left_lane_blocked), ("right", facts.right_lane_blocked)):
        if blocked:
            x = -LANE_WIDTH if side == "left" else LANE_WIDTH
            things.append(_Thing("car", x, _uniform(rng, SIDE_CAR_Z), dz=_uniform(rng, SIDE_CAR_SPEED),
                                 params={"colour": CAR_COLOURS[int(rng.integers(len(CAR_COLOURS)))],
                                         "blinker": "none", "blinking": False}))

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

    if facts.kerb_pedestrian != "none":
        # Waiting and stepping draw the same numbers, so both stand on the same spot in the last
        # frame; only the stepping one came from further out (earlier frames).
        side = -1 if rng.random() < 0.5 else 1
        edge = left_edge if side < 0 else right_edge
        walk = -side * WALK_SPEED if facts.kerb_pedestrian == "stepping" else 0.0
        things.append(_Thing("person", edge + side * KERB_OFFSET, _uniform(rng, KERB_PEDESTRIAN_Z),
                             dx=walk, dz=still))

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


def _blinker_lit(t: _Thing, steps_before_last: int) -> bool:
    if t.params["blinker"] == "none":
        return False
    return not t.params["blinking"] or steps_before_last % BLINK_PERIOD != 0


def _draw_car(draw: ImageDraw.ImageDraw, cam: _Camera, t: _Thing, x: float, z: float,
              blinker_lit: bool) -> None:
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
    if blinker_lit:
        side = -1 if t.params["blinker"] == "left" else 1
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
            _draw_car(draw, cam, t, x, z, _blinker_lit(t, steps_before_last))
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
    rng = np.random.default_rng([seed, SALT_CLIP, index])
    facts = sample_facts(rng, config)
    layout = sample_layout(rng, facts, config)
    return facts, render_clip(facts, layout, config)
