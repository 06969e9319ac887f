"""Schedules a pipeline declares (cron, interval, rrule); turned into Prefect deployment schedules by flows/."""
from __future__ import annotations

import re
from typing import Annotated, Any, Optional, Union

from pydantic import Discriminator, Field, Tag, field_validator

from tasks.registry import StrictModel

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Union[float, str], what: str) -> float:
    """Seconds, or a duration such as '90s', '30m', '2h', '1d' -> positive seconds; `what` names it in errors."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"invalid {what} {value!r} (expected seconds or a duration such as '90s', '30m', '2h')")
        value = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if value <= 0:
        raise ValueError(f"{what} must be positive")
    return float(value)


def _check_timezone(value: Optional[str]) -> Optional[str]:
    if value is None:
        return value
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {value!r} (expected an IANA name such as 'UTC' or 'Europe/Paris')") from None
    return value


class ScheduleBase(StrictModel):
    timezone: Optional[str] = None
    active: bool = True

    _tz = field_validator("timezone")(classmethod(lambda cls, v: _check_timezone(v)))


class CronSchedule(ScheduleBase):
    cron: str

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        from croniter import croniter

        if not croniter.is_valid(value):
            raise ValueError(f"invalid cron expression {value!r} (expected 5 fields: minute hour day month weekday)")
        return value


class IntervalSchedule(ScheduleBase):
    interval: Union[float, str] = Field(description="seconds, or a duration such as '30m', '1h', '1d'")

    @field_validator("interval")
    @classmethod
    def _positive_duration(cls, value: Union[float, str]) -> float:
        return parse_duration(value, "interval")


class RRuleSchedule(ScheduleBase):
    rrule: str

    @field_validator("rrule")
    @classmethod
    def _valid_rrule(cls, value: str) -> str:
        from dateutil import rrule

        try:
            rrule.rrulestr(value)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"invalid rrule {value!r}: {exc}") from None
        return value


def _schedule_kind(value: Any) -> Optional[str]:
    """Which kind a schedule entry is: the one of `cron`, `interval`, `rrule` it has."""
    keys = value if isinstance(value, dict) else vars(value) if hasattr(value, "__dict__") else {}
    found = [k for k in ("cron", "interval", "rrule") if k in keys]
    return f"{found[0]} schedule" if len(found) == 1 else None


ScheduleConfig = Annotated[
    Union[Annotated[CronSchedule, Tag("cron schedule")], Annotated[IntervalSchedule, Tag("interval schedule")],
          Annotated[RRuleSchedule, Tag("rrule schedule")]],
    Discriminator(_schedule_kind, custom_error_type="schedule_kind",
                  custom_error_message="each schedule needs exactly one of `cron`, `interval` or `rrule`"),
]
