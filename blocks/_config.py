"""Turning a block's fields into the core's frozen config, with one kind of error for both."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from provenflow.errors import ConfigError

Config = TypeVar("Config", bound=BaseModel)


class BlockConfigError(ConfigError, ValueError):
    """A ConfigError that pydantic also reports as a validation error when the block is built."""


def core_config(block: str, config_type: type[Config], values: dict[str, Any]) -> Config:
    """``config_type(**values)``, its validation errors joined into one message naming each field."""
    try:
        return config_type(**values)
    except ValidationError as error:
        problems = "; ".join(
            e["msg"].removeprefix("Value error, ")
            if e["type"] == "value_error"
            else f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
            for e in error.errors()
        )
        raise BlockConfigError(f"{block} is invalid: {problems}") from None
