"""``aioqwenimage emulator``: serve the DashScope emulator on loopback (placeholder until built)."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser("emulator", help="serve the emulator")
    parser.set_defaults(run=lambda _args: 0)
