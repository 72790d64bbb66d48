"""Drawn shoes: a deterministic side view of every synthetic catalogue item, from its attributes.

:func:`draw_shoe` draws one shoe, toe to the left, from its 14 attribute codes (the columns of
:func:`dialog_env.domain.schema.attribute_codes`): the category's silhouette (a boot's shaft, a
sneaker's thick two-tone sole, a clog's open back, a pump's low vamp), the main colour at its
lightness, the accent colour on the sole and the collar piping, the heel's height and shape
(stiletto, block, chunky, wedge), the toe (round, pointed, square, open with toes showing), the
shaft's height, the material's texture (suede speckle, canvas weave, mesh holes, fur tufts, satin
sheen), the shine (highlights), the pattern (floral, plaid, leopard, stripes, snakeskin, polka
dots), the closure (laces, buckle, strap, zipper, velcro, or an elastic gore for slip-ons), the
platform and the ornament (bow, studs, rhinestones, flower, fringe).

Every shape and colour is computed in integer arithmetic (:class:`~dialog_env.render.raster.Canvas`),
so an item has the same pixels on every machine; ``tests/test_render.py`` pins checksums. The
picture depends on the attribute codes only: two items with the same attributes look the same,
as the simulated shopper, who speaks about attributes only, sees them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from dialog_env.domain.schema import ATTRIBUTE_NAMES, ATTRIBUTE_VALUES, NUM_ATTRIBUTES
from dialog_env.errors import ConfigurationError
from dialog_env.render.raster import Canvas, Point

__all__ = ["COLOR_RGB", "DEFAULT_IMAGE_SIZE", "draw_shoe", "shoe_codes"]

#: Pixels per side of a drawn shoe unless asked otherwise.
DEFAULT_IMAGE_SIZE = 128

#: ``(r, g, b)`` of each colour name of the schema (main and accent colours) at medium lightness.
COLOR_RGB: Mapping[str, tuple[int, int, int]] = {
    "black": (28, 28, 30), "brown": (118, 72, 40), "white": (246, 246, 242), "red": (200, 30, 36),
    "blue": (40, 80, 200), "pink": (240, 150, 180), "gray": (128, 128, 132), "green": (50, 150, 64),
    "tan": (204, 165, 115), "gold": (214, 176, 60), "silver": (190, 192, 200), "purple": (126, 50, 152),
    "beige": (228, 214, 178), "yellow": (242, 214, 40), "orange": (242, 128, 26), "navy": (26, 32, 102),
}  # fmt: skip

_BACKGROUND = (244, 244, 240)
_SHADOW = (222, 222, 216)
_OUTLINE = (34, 30, 28)
_SKIN = (234, 190, 160)
_METAL = (196, 198, 206)
_GROUND = 900  # y of the ground line, in units

_HEEL_HEIGHT = {"flat": 0, "low": 80, "medium": 170, "high": 270, "very high": 360}
_PLATFORM = {"none": 26, "low": 62, "high": 112}
# How far the upper rises above the heel seat at the back: a shoe's collar, or the shaft's top.
_SHAFT_RISE = {"low": 150, "ankle": 330, "mid-calf": 520, "knee": 700}
# Low-cut categories: where the throat opens (x), how high the vamp stands there, the collar's height.
_LOW_VAMP_CUT = {
    "pumps": (360, 180, 140), "high heels": (330, 160, 120), "stilettos": (300, 140, 110),
    "wedding shoes": (350, 175, 135), "flats": (410, 170, 120),
}  # fmt: skip
_LOW_VAMP = set(_LOW_VAMP_CUT)
_SPORTY = {"athletic shoes", "sneakers"}


def shoe_codes(codes: Sequence[int] | np.ndarray | Mapping[str, int | str]) -> dict[str, str]:
    """Attribute name -> value name, from ``A`` codes in schema order or a mapping of codes or names.

    Raises:
        ConfigurationError: a missing attribute, or a code or name outside the schema.
    """
    if isinstance(codes, Mapping):
        missing = [name for name in ATTRIBUTE_NAMES if name not in codes]
        if missing:
            raise ConfigurationError(f"a shoe needs every attribute of the schema; missing {missing}")
        raw = [codes[name] for name in ATTRIBUTE_NAMES]
    else:
        raw = list(np.asarray(codes).reshape(-1))
        if len(raw) != NUM_ATTRIBUTES:
            raise ConfigurationError(f"a shoe has {NUM_ATTRIBUTES} attribute codes (schema order), got {len(raw)}")
    values = {}
    for name, options, value in zip(ATTRIBUTE_NAMES, ATTRIBUTE_VALUES, raw, strict=True):
        if isinstance(value, str):
            if value not in options:
                raise ConfigurationError(f"attribute {name!r} has no value {value!r}; its values are {list(options)}")
            values[name] = value
            continue
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise ConfigurationError(f"attribute {name!r}: code must be an integer, got {value!r}")
        if not 0 <= int(value) < len(options):
            raise ConfigurationError(f"attribute {name!r}: code {int(value)} outside 0..{len(options) - 1}")
        values[name] = options[int(value)]
    return values


def _scale(color: Sequence[int], numerator: int) -> tuple[int, int, int]:
    """``color`` times ``numerator`` / 256, per channel, clipped to 0..255."""
    r, g, b = (min(255, c * numerator // 256) for c in color)
    return r, g, b


def _mix(color: Sequence[int], other: Sequence[int], weight: int) -> tuple[int, int, int]:
    """``color`` moved ``weight`` / 256 of the way to ``other``."""
    r, g, b = (c + (o - c) * weight // 256 for c, o in zip(color, other, strict=True))
    return r, g, b


def _luma(color: Sequence[int]) -> int:
    r, g, b = color
    return (77 * r + 150 * g + 29 * b) // 256


def _main_color(name: str, lightness: str) -> tuple[int, int, int]:
    base = COLOR_RGB[name]
    if lightness == "dark":
        return _scale(base, 150)
    if lightness == "light":
        return _mix(base, (255, 255, 255), 110)
    return base


@dataclass(frozen=True)
class _Geometry:
    """Where the parts of a shoe lie, in units (x to the right, y down; toe at the left)."""

    heel_height: int
    sole: int  # sole thickness under the forefoot
    seat_sole: int  # sole thickness under the heel seat
    ball_x: int = 380
    seat_x: int = 780
    toe_x: int = 110

    def sole_top(self, x: int) -> int:
        """Y of the top of the sole (where the upper sits) at ``x``."""
        front = _GROUND - self.sole
        back = _GROUND - self.heel_height - self.seat_sole
        if x <= self.ball_x:
            return front
        if x >= self.seat_x:
            return back
        return front + (back - front) * (x - self.ball_x) // (self.seat_x - self.ball_x)

    def sole_bottom(self, x: int) -> int:
        """Y of the bottom of the sole at ``x`` (the ground under the forefoot, the heel's top at the back)."""
        if x <= self.ball_x:
            return _GROUND
        back = _GROUND - self.heel_height
        if x >= self.seat_x:
            return back
        return _GROUND + (back - _GROUND) * (x - self.ball_x) // (self.seat_x - self.ball_x)


def _toe_outline(toe: str, geometry: _Geometry) -> list[Point]:
    """The front of the upper, from the sole at the toe up to the vamp (points left of x = 260)."""
    y = geometry.sole_top(geometry.toe_x)
    if toe == "pointed":
        return [(geometry.toe_x + 20, y), (30, y - 30), (110, y - 100), (190, y - 146)]
    if toe == "square":
        return [(geometry.toe_x - 12, y), (geometry.toe_x - 12, y - 130), (150, y - 150), (200, y - 160)]
    # round and open: a rounded nose
    return [(geometry.toe_x, y), (82, y - 42), (90, y - 100), (124, y - 140), (190, y - 162)]


def _upper_outline(values: Mapping[str, str], geometry: _Geometry) -> tuple[list[Point], list[Point]]:
    """The upper's polygon and the line of its top edge (the opening or the shaft's top), front to back."""
    category = values["category"]
    g = geometry
    seat = g.sole_top(g.seat_x)
    rise = _SHAFT_RISE[values["shaft"]]
    front = _toe_outline(values["toe"], g)
    if rise > _SHAFT_RISE["low"]:
        top = max(40, seat - rise)
        shaft_front = min(620, 470 + rise // 6)
        top_line = [(shaft_front, top), (g.seat_x + 16, top)]
        outline = [
            *front,
            (300, g.sole_top(300) - 168),
            (440, g.sole_top(440) - 210),
            (shaft_front - 10, max(top + 60, g.sole_top(440) - 300)),
            top_line[0],
            top_line[1],
            (g.seat_x + 34, seat - 90),
            (g.seat_x + 22, seat),
        ]
    else:
        if category in _LOW_VAMP:
            throat_x, vamp_drop, collar = _LOW_VAMP_CUT[category]
        elif category in _SPORTY:
            throat_x, vamp_drop, collar = 520, 250, 230
        elif category == "clogs":
            throat_x, vamp_drop, collar = 470, 240, 50
        else:
            throat_x, vamp_drop, collar = 450, 220, 190
        opening = [
            (throat_x, g.sole_top(throat_x) - vamp_drop),
            ((throat_x + g.seat_x) // 2, g.sole_top((throat_x + g.seat_x) // 2) - max(30, collar - 50)),
            (g.seat_x + 8, seat - collar),
        ]
        top_line = opening
        outline = [
            *front,
            (throat_x - 90, g.sole_top(throat_x - 90) - vamp_drop - 14),
            *opening,
            (g.seat_x + 28, seat - collar // 2),
            (g.seat_x + 20, seat),
        ]
    back_along_sole = [(x, g.sole_top(x)) for x in (g.seat_x, 600, g.ball_x)]
    return outline + back_along_sole, top_line


def _heel_polygon(shape: str, geometry: _Geometry) -> list[Point] | None:
    g = geometry
    top = _GROUND - g.heel_height
    if g.heel_height == 0 or shape == "flat":
        return None
    if shape == "wedge":
        return [(g.ball_x, _GROUND), (g.ball_x + 40, _GROUND - 8), (g.seat_x + 20, top), (g.seat_x + 20, _GROUND)]
    if shape == "stiletto":
        return [(g.seat_x - 70, top), (g.seat_x + 18, top), (g.seat_x + 6, _GROUND), (g.seat_x - 10, _GROUND)]
    if shape == "block":
        return [(g.seat_x - 80, top), (g.seat_x + 20, top), (g.seat_x + 12, _GROUND), (g.seat_x - 62, _GROUND)]
    # chunky
    return [(g.seat_x - 120, top), (g.seat_x + 24, top), (g.seat_x + 24, _GROUND), (g.seat_x - 110, _GROUND)]


def _category_cues(
    canvas: Canvas, upper: np.ndarray, category: str, geometry: _Geometry, top_line: list[Point],
    base: tuple[int, int, int], accent: tuple[int, int, int] | None,
) -> None:  # fmt: skip
    """What tells categories of one silhouette apart: a sneaker's toe cap, an athletic shoe's side stripe..."""
    g = geometry
    contrast = (246, 246, 244) if _luma(base) < 170 else (50, 50, 56)
    if category == "sneakers":  # a rubber toe cap and a side stripe at the sole
        y = g.sole_top(g.toe_x)
        canvas.paint(upper & canvas.ellipse(g.toe_x + 10, y, 110, 64), contrast)
        canvas.paint(upper & canvas.band([(g.toe_x + 40, y - 22), (g.seat_x, g.sole_top(g.seat_x) - 22)], 6), contrast)
    elif category == "athletic shoes":  # a sweeping side stripe and a heel tab
        stripe = canvas.polygon(
            [(300, g.sole_top(300) - 30), (640, g.sole_top(640) - 170), (690, g.sole_top(690) - 150),
             (420, g.sole_top(420) - 20)]
        )  # fmt: skip
        canvas.paint(upper & stripe, accent if accent is not None else contrast)
        x, y = top_line[-1]
        canvas.paint(canvas.rectangle(x - 6, y - 40, x + 22, y + 30), _scale(base, 170))
    elif category == "wedding shoes":  # a scalloped top line
        (x0, y0), (x1, y1) = top_line[0], top_line[-1]
        for i in range(8):
            x = x0 + (x1 - x0) * i // 7
            y = y0 + (y1 - y0) * i // 7
            canvas.paint(
                upper & canvas.ellipse(x, y + 4, 22, 16), (252, 252, 250) if _luma(base) < 200 else (200, 190, 170)
            )
    elif category == "flats":  # a bound top line and a small centre seam at the toe
        canvas.paint(upper & canvas.band(top_line, 10), _scale(base, 130 if _luma(base) > 60 else 500))
        y = g.sole_top(g.toe_x)
        canvas.paint(
            upper & canvas.band([(150, y - 150), (300, y - 172)], 5), _scale(base, 150 if _luma(base) > 60 else 400)
        )
    elif category == "high heels":  # an open side between vamp and counter (d'Orsay cut)
        x, y = top_line[0]
        canvas.paint(upper & canvas.polygon([(x + 20, y), (x + 150, y - 10), (x + 150, g.sole_top(x + 150) - 14),
                                             (x + 60, g.sole_top(x + 60) - 10)]), _BACKGROUND)  # fmt: skip
    elif category == "stilettos":  # a sharp seam down the vamp
        x, y = top_line[0]
        canvas.paint(upper & canvas.column_band([(x - 60, y - 20), (x - 90, g.sole_top(x - 90) - 10)], 6),
                     _scale(base, 150 if _luma(base) > 60 else 420))  # fmt: skip
    elif category == "boots":  # a welt line above the sole
        canvas.paint(upper & canvas.band([(g.toe_x, g.sole_top(g.toe_x) - 12), (g.ball_x, g.sole_top(g.ball_x) - 12),
                                          (g.seat_x + 30, g.sole_top(g.seat_x) - 12)], 5),
                     _scale(base, 150 if _luma(base) > 60 else 420))  # fmt: skip


def _material(canvas: Canvas, upper: np.ndarray, material: str, base: tuple[int, int, int]) -> None:
    """The material's texture over the upper."""
    gradient = (canvas.y - 512) // 64  # darker towards the top, lighter towards the sole
    if material == "leather":
        canvas.shade(upper, gradient)
    elif material == "suede":
        canvas.shade(upper, (canvas.noise(11) - 128) // 6)
    elif material == "patent":
        canvas.shade(upper, 2 * gradient)
    elif material == "satin":
        canvas.shade(upper, np.where((canvas.y // 48 + canvas.x // 160) % 2 == 0, 14, -6))
    elif material == "canvas":
        step = canvas.unit_per_pixel
        weave = ((canvas.x // step) % 3 == 0) | ((canvas.y // step) % 3 == 0)
        canvas.shade(upper & weave, -22)
    elif material == "rubber":
        canvas.shade(upper, gradient - 6)
    elif material == "fur":
        canvas.shade(upper, (canvas.noise(29, cell=2) - 128) // 3)
    elif material == "mesh":
        step = canvas.unit_per_pixel
        holes = ((canvas.x // step) % 3 == 1) & ((canvas.y // step) % 3 == 1)
        canvas.paint(upper & holes, _scale(base, 120) if _luma(base) > 60 else _mix(base, (255, 255, 255), 90))


def _pattern(canvas: Canvas, upper: np.ndarray, pattern: str, base: tuple[int, int, int], accent: tuple[int, int, int]):
    """The print of the upper."""
    ink = _scale(base, 70) if _luma(base) > 90 else _mix(base, (255, 255, 255), 170)
    x, y = canvas.x, canvas.y
    if pattern == "floral":
        petal = accent if accent != base else _mix(ink, (240, 120, 160), 128)
        cx, cy = x % 112, (y + (x // 112 % 2) * 56) % 112
        flower = np.zeros_like(upper)
        for dx, dy in ((56, 36), (56, 76), (36, 56), (76, 56)):
            flower |= (cx - dx) ** 2 + (cy - dy) ** 2 <= 15**2
        canvas.paint(upper & flower, petal)
        canvas.paint(upper & ((cx - 56) ** 2 + (cy - 56) ** 2 <= 10**2), (236, 200, 40))
    elif pattern == "plaid":
        across = (y % 96) < 24
        down = (x % 96) < 24
        canvas.blend(upper & (across ^ down), ink, 110)
        canvas.blend(upper & across & down, ink, 200)
        canvas.blend(upper & ((x % 96 == 60) | (y % 96 == 60)), (240, 240, 240), 120)
    elif pattern == "leopard":
        cell_x, cell_y = x // 88, y // 88
        jitter = (cell_x * 37 + cell_y * 61) % 29 - 14
        cx, cy = x % 88 - 44 - jitter, y % 88 - 44 + jitter // 2
        outer = (cx * 22) ** 2 + (cy * 30) ** 2 <= (30 * 22) ** 2
        inner = (cx * 12) ** 2 + (cy * 18) ** 2 <= (18 * 12) ** 2
        canvas.paint(upper & outer & ~inner, (40, 26, 16))
        canvas.paint(upper & inner, _mix(base, (160, 100, 40), 140))
    elif pattern == "stripes":
        canvas.paint(upper & (((x + y) // 44) % 2 == 0), ink)
    elif pattern == "snakeskin":
        row = y // 40
        cx = (x + (row % 2) * 28) % 56 - 28
        cy = y % 40 - 20
        scale = (cx * 20) ** 2 + (cy * 28) ** 2
        canvas.blend(upper & (scale >= (24 * 20) ** 2) & (scale <= (28 * 20 + 40) ** 2), ink, 190)
        canvas.shade(upper & (scale < (12 * 20) ** 2), 12)
    elif pattern == "polka dots":
        row = y // 72
        cx = (x + (row % 2) * 36) % 72 - 36
        cy = y % 72 - 36
        canvas.paint(upper & (cx**2 + cy**2 <= 17**2), ink)


def _shine(canvas: Canvas, upper: np.ndarray, shine: str, geometry: _Geometry, top: int) -> None:
    if shine == "matte":
        return
    strength = 90 if shine == "semi-shiny" else 170
    vamp_y = geometry.sole_top(260) - 80
    canvas.blend(upper & canvas.ellipse(250, vamp_y, 90, 22), (255, 255, 255), strength)
    if shine == "shiny":
        canvas.blend(upper & canvas.band([(600, top + 70), (740, top + 40)], 10), (255, 255, 255), 150)
        canvas.blend(upper & canvas.ellipse(130, geometry.sole_top(130) - 60, 22, 30), (255, 255, 255), 120)


def _closure(
    canvas: Canvas, upper: np.ndarray, values: Mapping[str, str], geometry: _Geometry, top_line: list[Point],
    base: tuple[int, int, int], trim: tuple[int, int, int],
) -> None:  # fmt: skip
    closure = values["closure"]
    g = geometry
    tall = values["shaft"] != "low"
    contrast = (250, 250, 246) if _luma(base) < 150 else (36, 34, 34)
    if closure == "laces":
        # Criss-cross laces up the throat (and up the shaft's front on a boot), with eyelets.
        xs = range(300, 480, 44) if not tall else range(330, 600, 44)
        for i, x in enumerate(xs):
            y_low = g.sole_top(x) - (150 if not tall else 170 + i * 40)
            y_high = y_low - 50
            canvas.paint(upper & canvas.band([(x - 22, y_low), (x + 22, y_high)], 8), contrast)
            canvas.paint(upper & canvas.band([(x - 22, y_high), (x + 22, y_low)], 8), contrast)
            canvas.paint(upper & canvas.ellipse(x - 22, y_high, 9, 9), _scale(base, 90))
    elif closure == "buckle":
        x = 450 if not tall else 640
        y0 = g.sole_top(x) - (200 if not tall else 260)
        strap = canvas.polygon([(x - 24, y0), (x + 24, y0 - 8), (x + 40, g.sole_top(x) - 10), (x - 8, g.sole_top(x))])
        canvas.paint(strap, _scale(base, 200))
        ring = canvas.rectangle(x - 30, y0 + 40, x + 34, y0 + 104) & ~canvas.rectangle(x - 16, y0 + 54, x + 20, y0 + 90)
        canvas.paint(ring, _METAL)
    elif closure == "strap":
        # An ankle strap across the top of the opening (or around the shaft).
        (x0, y0), (x1, y1) = top_line[0], top_line[-1]
        canvas.paint(canvas.band([(x0 - 10, y0 + 28), (x1 + 30, y1 + 28)], 16), trim)
        canvas.paint(canvas.ellipse(x1 - 20, y1 + 28, 12, 12), _METAL)
    elif closure == "zipper":
        x_top, y_top = top_line[-1]
        x = x_top - 40
        y_bottom = g.sole_top(g.seat_x) - 40
        track = canvas.rectangle(x - 6, y_top + 10, x + 6, y_bottom)
        step = 2 * canvas.unit_per_pixel
        teeth = canvas.rectangle(x - 12, y_top + 10, x + 12, y_bottom) & ((canvas.y // step) % 2 == 0)
        canvas.paint(upper & (track | teeth), _METAL)
        canvas.paint(canvas.rectangle(x - 14, y_top + 10, x + 14, y_top + 46), _scale(_METAL, 200))
    elif closure == "velcro":
        for x in (300, 400):
            y_top = g.sole_top(x) - 190
            strap = canvas.polygon(
                [(x, y_top), (x + 60, y_top - 6), (x + 70, g.sole_top(x) - 20), (x + 10, g.sole_top(x) - 14)]
            )
            canvas.paint(upper & strap, trim)
            patch = canvas.rectangle(x + 12, y_top + 14, x + 56, y_top + 60) & (canvas.noise(5) > 110)
            canvas.paint(upper & patch, _scale(trim, 170))
    elif closure == "slip-on":
        # An elastic gore: a narrow ribbed V at the side of the throat.
        x, y = top_line[0]
        gore = canvas.polygon([(x + 20, y - 6), (x + 70, y - 10), (x + 45, y + 90)])
        ribs = (canvas.x // (2 * canvas.unit_per_pixel)) % 2 == 0
        canvas.paint(upper & gore, _scale(base, 150))
        canvas.shade(upper & gore & ribs, -18)


def _ornament(
    canvas: Canvas, values: Mapping[str, str], geometry: _Geometry, top_line: list[Point], base: tuple[int, int, int]
) -> None:
    ornament = values["ornament"]
    g = geometry
    vamp = (230, g.sole_top(230) - 128)
    if ornament == "bow":
        bow_color = (250, 250, 248) if _luma(base) < 140 else (30, 28, 30)
        x, y = vamp
        canvas.paint(canvas.polygon([(x - 90, y - 46), (x, y), (x - 90, y + 46)]), bow_color)
        canvas.paint(canvas.polygon([(x + 90, y - 46), (x, y), (x + 90, y + 46)]), bow_color)
        canvas.paint(canvas.ellipse(x, y, 22, 24), _scale(bow_color, 170) if _luma(bow_color) > 100 else (90, 90, 90))
    elif ornament == "studs":
        for x in range(160, g.seat_x, 56):
            y = g.sole_top(x) - 34
            canvas.paint(canvas.ellipse(x, y, 14, 14), _METAL)
            canvas.paint(canvas.ellipse(x - 4, y - 4, 5, 5), (255, 255, 255))
    elif ornament == "rhinestones":
        (x0, y0), (x1, y1) = top_line[0], top_line[-1]
        points = [(150 + 40 * i, g.sole_top(150 + 40 * i) - 120 + 8 * (i % 2)) for i in range(6)]
        points += [(x0 + (x1 - x0) * i // 5, y0 + (y1 - y0) * i // 5 + 26) for i in range(6)]
        for x, y in points:
            diamond = canvas.polygon([(x, y - 16), (x + 12, y), (x, y + 16), (x - 12, y)])
            canvas.paint(diamond, (226, 240, 255))
            canvas.paint(canvas.ellipse(x, y, 4, 4), (255, 255, 255))
    elif ornament == "flower":
        x, y = vamp[0] + 60, vamp[1] + 30
        petal_color = (250, 246, 250) if _luma(base) < 170 else (220, 70, 110)
        for dx, dy in ((0, -36), (34, -11), (21, 29), (-21, 29), (-34, -11)):
            canvas.paint(canvas.ellipse(x + dx, y + dy, 24, 24), petal_color)
        canvas.paint(canvas.ellipse(x, y, 16, 16), (236, 196, 40))
    elif ornament == "fringe":
        fringe_color = _scale(base, 170) if _luma(base) > 70 else _mix(base, (255, 255, 255), 90)
        (x0, y0), (x1, y1) = top_line[0], top_line[-1]
        step = 3 * canvas.unit_per_pixel
        for i in range(0, max(1, (x1 - x0) // step) + 1):
            x = x0 + i * step
            y = y0 + (y1 - y0) * (x - x0) // max(1, x1 - x0)
            length = 70 + (i * 37) % 40
            canvas.paint(
                canvas.rectangle(x - canvas.unit_per_pixel // 2 - 2, y + 10, x + 3, y + 10 + length), fringe_color
            )


def draw_shoe(
    codes: Sequence[int] | np.ndarray | Mapping[str, int | str], size: int = DEFAULT_IMAGE_SIZE
) -> np.ndarray:
    """Draw one shoe from its attributes, side view, toe to the left.

    Args:
        codes: ``(A,)`` integer attribute codes in schema order (a row of
            :func:`~dialog_env.domain.schema.attribute_codes`), or a mapping attribute name ->
            code or value name (every attribute of the schema).
        size: pixels per side: 128 (default), 256 or 512; the drawing is the same at every size,
            only finer.

    Returns:
        ``(size, size, 3) uint8`` RGB, the same on every machine.

    Raises:
        ConfigurationError: codes outside the schema, or an unsupported size.
    """
    values = shoe_codes(codes)
    canvas = Canvas(size, background=_BACKGROUND)
    category = values["category"]
    base = _main_color(values["color"], values["lightness"])
    accent = COLOR_RGB[values["accent"]] if values["accent"] != "none" else None
    heel_height = _HEEL_HEIGHT[values["heel_height"]] if values["heel_shape"] != "flat" else 0
    sole = _PLATFORM[values["platform"]] + (34 if category in _SPORTY else 0) + (40 if category == "clogs" else 0)
    geometry = _Geometry(heel_height=heel_height, sole=sole, seat_sole=min(sole, 40 if heel_height else sole))

    # Shadow, heel, sole, then the upper over them.
    canvas.paint(canvas.ellipse(470, _GROUND + 14, 400, 22), _SHADOW)
    heel = _heel_polygon(values["heel_shape"], geometry)
    heel_mask = canvas.polygon(heel) if heel else np.zeros((size, size), dtype=bool)
    heel_color = _scale(base, 200) if values["heel_shape"] != "wedge" or accent is None else accent
    if category == "clogs":
        heel_color = (190, 150, 100)  # a wooden sole
    canvas.paint(heel_mask, heel_color)
    if heel and values["heel_shape"] in ("stiletto", "block", "chunky"):
        tip = canvas.rectangle(heel[3][0] - 4, _GROUND - 18, heel[2][0] + 4, _GROUND + 1)
        canvas.paint(tip & heel_mask, _scale(heel_color, 110))
    g = geometry
    sole_points = [(x, g.sole_bottom(x)) for x in (g.toe_x + 20, 260, g.ball_x, 600, g.seat_x)]
    sole_points += [(g.seat_x + 24, g.sole_bottom(g.seat_x)), (g.seat_x + 24, g.sole_top(g.seat_x))]
    sole_points += [(x, g.sole_top(x)) for x in (g.seat_x, 600, g.ball_x, 200)]
    toe = _toe_outline(values["toe"], geometry)[:2]
    sole_points += [toe[0], (toe[1][0], min(_GROUND, toe[1][1] + sole // 2)), (toe[1][0] + 20, _GROUND)]
    sole_mask = canvas.polygon(sole_points)
    if category in _SPORTY:
        sole_color = (246, 246, 244) if _luma(base) < 200 else (60, 60, 64)
    elif category == "clogs":
        sole_color = (190, 150, 100)
    else:
        sole_color = accent if accent is not None else _scale(base, 110)
    canvas.paint(sole_mask, sole_color)
    if category in _SPORTY:
        canvas.paint(sole_mask & canvas.band([(g.toe_x, _GROUND - 16), (g.seat_x + 30, _GROUND - 16)], 10),
                     accent if accent is not None else (90, 90, 96))  # fmt: skip

    outline, top_line = _upper_outline(values, geometry)
    upper = canvas.polygon(outline)
    canvas.paint(upper, base)
    _pattern(canvas, upper, values["pattern"], base, accent if accent is not None else base)
    _material(canvas, upper, values["material"], base)
    if values["toe"] == "open":
        x, y = geometry.toe_x + 40, geometry.sole_top(geometry.toe_x) - 46
        toes = canvas.ellipse(x, y, 60, 40) & upper
        canvas.paint(toes, _SKIN)
        canvas.paint(canvas.edges(toes), _scale(_SKIN, 170))
    top = min(y for _, y in top_line)
    _shine(canvas, upper, values["shine"], geometry, top)
    trim = accent if accent is not None else _scale(base, 140 if _luma(base) > 50 else 400)
    if accent is not None:  # collar piping
        canvas.paint(upper & canvas.band(top_line, 12), accent)
    _category_cues(canvas, upper, category, geometry, top_line, base, accent)
    if category == "rain boots":  # a pull tab at the back of the top
        x, y = top_line[-1]
        canvas.paint(canvas.rectangle(x - 10, y - 50, x + 16, y + 30), _scale(base, 170))
    if values["material"] == "fur":  # a fur cuff along the top edge
        cuff = canvas.band(top_line, 34) & (canvas.noise(7, cell=1) > 70)
        canvas.paint(cuff, _mix(base, (255, 255, 255), 120))
    _closure(canvas, upper, values, geometry, top_line, base, trim)
    _ornament(canvas, values, geometry, top_line, base)

    shoe = upper | sole_mask | heel_mask
    canvas.blend(canvas.edges(shoe), _OUTLINE, 200 if values["material"] != "rubber" else 256)
    canvas.blend(canvas.edges(upper) & ~canvas.edges(shoe), _OUTLINE, 110)
    return canvas.image()
