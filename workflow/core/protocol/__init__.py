"""Protocols as validated data: load, check, and describe."""

from .loader import load_protocol, parse_protocol
from .model import Protocol

__all__ = ["Protocol", "load_protocol", "parse_protocol"]
