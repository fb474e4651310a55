"""The levels-over-time chart of the history page: server-rendered SVG geometry, no JavaScript."""

from dataclasses import dataclass

from django.utils import dateformat, timezone

from assessments.cefr import LEVELS, level_index


@dataclass(frozen=True)
class ChartPoint:
    x: float
    y: float
    level: str  # the level shown: the teacher's when reviewed, else the assessed one
    reviewed: bool
    partial: bool  # "at least": placement ended early and no teacher reviewed it; not on the line
    date_label: str
    show_date: bool
    date_anchor: str  # text-anchor of the date label: the outer ones stay inside the chart
    middle: bool  # neither the first nor the last point (phone width shows only those dates)
    pk: int

    @property
    def title(self) -> str:
        if self.partial:
            return f"at least {self.level} (provisional: the session ended early)"
        return f"{self.level}{' (reviewed by a teacher)' if self.reviewed else ''}"


@dataclass(frozen=True)
class LevelChart:
    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    points: tuple[ChartPoint, ...]
    rows: tuple[tuple[str, float], ...]  # (level, y) gridlines, A1 at the bottom

    @property
    def line_points(self) -> tuple[ChartPoint, ...]:
        """The points the line joins: a partial result ("at least") says too little to pull it."""
        return tuple(p for p in self.points if not p.partial)

    @property
    def polyline(self) -> str:
        return " ".join(f"{p.x:.1f},{p.y:.1f}" for p in self.line_points)

    @property
    def has_partial(self) -> bool:
        return any(p.partial for p in self.points)

    @property
    def description(self) -> str:
        return "; ".join(f"{p.date_label}: {p.title}" for p in self.points)


CHART_WIDTH, CHART_HEIGHT = 560, 214
CHART_LEFT, CHART_RIGHT, CHART_TOP, CHART_BOTTOM = 40, 544, 14, 174
CHART_DATE_LABELS = 6  # label every point up to this many; beyond, only the first and the last


def date_labels(moments) -> list[str]:
    """The x axis's labels: the day, or the day and the time when two sessions share a day."""
    local = [timezone.localtime(m) for m in moments]
    days = [m.date() for m in local]
    fmt = "j M Y" if len(set(days)) == len(days) else "j M, H:i"
    return [dateformat.format(m, fmt) for m in local]


def level_chart(assessments) -> LevelChart:
    """Chart geometry for `assessments` in date order: evenly spaced points, one row per level.

    An assessment without a level (not rated: too little evidence) is not drawn: it says nothing
    about the learner's level, and a default level would pull the line down. A partial one (placement
    ended before the ceiling: "at least" that level) is drawn apart and left off the line, for the
    same reason, unless a teacher reviewed it.
    """
    assessments = [a for a in assessments if a.teacher_level or a.level]
    labels = date_labels([a.created_at for a in assessments])
    step = (CHART_BOTTOM - CHART_TOP) / (len(LEVELS) - 1)
    rows = tuple((level, CHART_BOTTOM - i * step) for i, level in enumerate(LEVELS))
    n = len(assessments)
    points = []
    for i, a in enumerate(assessments):
        level = a.teacher_level or a.level
        x = (CHART_LEFT + CHART_RIGHT) / 2 if n == 1 else CHART_LEFT + 12 + i * (CHART_RIGHT - CHART_LEFT - 24) / (n - 1)
        points.append(
            ChartPoint(
                x=x,
                y=CHART_BOTTOM - level_index(level) * step,
                level=level,
                reviewed=bool(a.teacher_level),
                partial=a.partial and not a.teacher_level,
                date_label=labels[i],
                show_date=n <= CHART_DATE_LABELS or i in (0, n - 1),
                date_anchor="middle" if n == 1 else "start" if i == 0 else "end" if i == n - 1 else "middle",
                middle=0 < i < n - 1,
                pk=a.pk,
            )
        )
    return LevelChart(
        CHART_WIDTH, CHART_HEIGHT, CHART_LEFT, CHART_RIGHT, CHART_TOP, CHART_BOTTOM, tuple(points), rows
    )
