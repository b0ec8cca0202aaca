"""Label-bit vectors that every entry point must accept or refuse alike (``vlmrl_trl.schema.check_bits``): the
schema's conversions, the metrics, R2's label columns and both dataset loaders share these tables."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class BitCase:
    """One candidate vector for ``n`` bits; ``expected`` is the checked list, None when it must be refused;
    ``in_json`` says whether a JSON file (predictions, label files, manifests) can hold it."""

    name: str
    value: Any
    expected: list[int] | None
    in_json: bool = True

    def json_value(self) -> Any:
        """The value as a JSON file would hand it back (NaN too, as Python's json writes and reads it)."""
        return json.loads(json.dumps(self.value))


def bit_cases(n: int) -> list[BitCase]:
    """The table for vectors of ``n`` bits (n >= 2): the one set bit is the second."""
    one = [0, 1] + [0] * (n - 2)
    return [
        BitCase("ints", one, one),
        BitCase("bools", [bool(b) for b in one], one),
        BitCase("floats", [float(b) for b in one], one),
        BitCase("tuple", tuple(one), one, in_json=False),
        BitCase("numpy_ints", np.array(one), one, in_json=False),
        BitCase("numpy_bools", np.array(one, dtype=bool), one, in_json=False),
        BitCase("numpy_scalars", [np.int64(0), np.bool_(True)] + [np.float32(0)] * (n - 2), one, in_json=False),
        BitCase("strings", [str(b) for b in one], None),
        BitCase("a_string_among_bits", ["0"] + one[1:], None),
        BitCase("two", [2] + one[1:], None),
        BitCase("half", [0.5] + one[1:], None),
        BitCase("nan", [float("nan")] + one[1:], None),
        BitCase("none_item", [None] + one[1:], None),
        BitCase("nested", [[b] for b in one], None),
        BitCase("too_short", one[:-1], None),
        BitCase("too_long", [*one, 0], None),
        BitCase("whole_string", "".join(map(str, one)), None),
        BitCase("whole_bytes", bytes(one), None, in_json=False),
        BitCase("whole_dict", {"bits": one}, None),
        BitCase("null", None, None),
        BitCase("numpy_2d", np.array([one, one]), None, in_json=False),
    ]


def json_bit_cases(n: int) -> list[BitCase]:
    """The cases a JSON file can hold, as read back from one."""
    return [BitCase(c.name, c.json_value(), c.expected) for c in bit_cases(n) if c.in_json]
