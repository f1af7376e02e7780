"""Register map of the Inspire RH56 hand over Modbus, and helpers to encode/decode its blocks.

Addressing (see the field notes, "Inspire RH56 hand")
    The hand's map is a *byte* map: 16-bit blocks of 6 values are 12 bytes long (ANGLE_SET 1486, FORCE_SET 1498)
    and 8-bit blocks of 6 values are 6 bytes long (ERROR 1606, STATUS 1612, TEMP 1618). Public drivers use the
    byte address as the Modbus register (PDU) address and read ``n_bytes / 2`` registers from there, e.g. the
    18 bytes ERROR+STATUS+TEMP as 9 registers at 1606. So a Modbus read of ``count`` registers at address ``A``
    returns bytes ``A .. A + 2*count - 1``, two per register. The emulator implements exactly this, and the
    driver only ever reads/writes at documented block starts (or contiguous runs of documented blocks), which
    works whether a unit maps addresses as bytes or (for block starts) verbatim.

Byte order
    Which byte of a register comes first differs between public drivers and is unverified, so it is a
    parameter (``ByteOrder``). ``low_first``: register = byte[A] | byte[A+1] << 8 (DoF 0 of an 8-bit block in
    the low byte; 16-bit values stored little-endian). ``high_first``: the other way round. For 16-bit blocks
    both orders give the same register values; only the packing of 8-bit blocks differs.

Per-DoF blocks hold 6 values in the Inspire DoF order (``HAND_DOF_NAMES``): pinky, ring, middle, index,
thumb bend, thumb rotation. FORCE_ACT is signed (two's complement); the rest are unsigned.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np

from embodiment import HAND_DOF, HAND_RANGE

ANGLE_MIN, ANGLE_MAX = int(HAND_RANGE[0]), int(HAND_RANGE[1])  # 0..1000, the embodiment's hand range
ANGLE_UNCHANGED = 0xFFFF  # -1 written to ANGLE_SET as u16: "keep this DoF's current target"
SPEED_MIN, SPEED_MAX = 0, 1000
FORCE_LIMIT_MIN, FORCE_LIMIT_MAX = 0, 1000
MAX_READ_REGISTERS = 125  # Modbus limit per read request


class ByteOrder(str, Enum):
    """How two consecutive bytes of the hand's memory share one 16-bit Modbus register."""

    LOW_FIRST = "low_first"  # byte A in bits 0..7, byte A+1 in bits 8..15
    HIGH_FIRST = "high_first"  # byte A in bits 8..15, byte A+1 in bits 0..7


@dataclass(frozen=True)
class RegisterBlock:
    name: str
    address: int  # byte address of the first value; also the Modbus address to read/write the block at
    values: int  # number of values (DoFs) in the block
    width: int  # bytes per value: 1 or 2
    signed: bool
    writable: bool

    @property
    def n_bytes(self) -> int:
        return self.values * self.width

    @property
    def end(self) -> int:
        """One past the last byte of the block."""
        return self.address + self.n_bytes

    @property
    def registers(self) -> int:
        """Number of 16-bit registers to read/write the block in one request."""
        return (self.n_bytes + 1) // 2

    def contains(self, byte_address: int) -> bool:
        return self.address <= byte_address < self.end


HAND_ID = RegisterBlock("HAND_ID", 1000, 1, 1, False, True)
CLEAR_ERROR = RegisterBlock("CLEAR_ERROR", 1004, 1, 1, False, True)
SAVE = RegisterBlock("SAVE", 1005, 1, 1, False, True)
POS_SET = RegisterBlock("POS_SET", 1474, HAND_DOF, 2, False, True)
ANGLE_SET = RegisterBlock("ANGLE_SET", 1486, HAND_DOF, 2, False, True)
FORCE_SET = RegisterBlock("FORCE_SET", 1498, HAND_DOF, 2, False, True)
SPEED_SET = RegisterBlock("SPEED_SET", 1522, HAND_DOF, 2, False, True)
POS_ACT = RegisterBlock("POS_ACT", 1534, HAND_DOF, 2, False, False)
ANGLE_ACT = RegisterBlock("ANGLE_ACT", 1546, HAND_DOF, 2, False, False)
FORCE_ACT = RegisterBlock("FORCE_ACT", 1582, HAND_DOF, 2, True, False)
CURRENT = RegisterBlock("CURRENT", 1594, HAND_DOF, 2, False, False)
ERROR = RegisterBlock("ERROR", 1606, HAND_DOF, 1, False, False)
STATUS = RegisterBlock("STATUS", 1612, HAND_DOF, 1, False, False)
TEMP = RegisterBlock("TEMP", 1618, HAND_DOF, 1, False, False)

ALL_BLOCKS: tuple[RegisterBlock, ...] = (
    HAND_ID, CLEAR_ERROR, SAVE, POS_SET, ANGLE_SET, FORCE_SET, SPEED_SET,
    POS_ACT, ANGLE_ACT, FORCE_ACT, CURRENT, ERROR, STATUS, TEMP,
)
STATE_BLOCKS: tuple[RegisterBlock, ...] = (ANGLE_ACT, FORCE_ACT, CURRENT, ERROR, STATUS, TEMP)
# The byte window the emulator serves (HAND_ID .. end of TEMP); even length so it is whole registers.
MAP_START = HAND_ID.address
MAP_END = TEMP.end + (TEMP.end - MAP_START) % 2


@dataclass(frozen=True)
class Span:
    """One read request: ``registers`` registers at Modbus address ``address`` covering ``blocks``."""

    address: int
    registers: int
    blocks: tuple[RegisterBlock, ...]


def span_of(blocks: Sequence[RegisterBlock]) -> Span:
    """The single read covering ``blocks`` (sorted; gaps between them are read too)."""
    blocks = tuple(sorted(blocks, key=lambda b: b.address))
    start, end = blocks[0].address, max(b.end for b in blocks)
    regs = (end - start + 1) // 2
    if regs > MAX_READ_REGISTERS:
        raise ValueError(f"span {start}..{end} needs {regs} registers, more than {MAX_READ_REGISTERS}")
    return Span(start, regs, blocks)


# How read_state reads the state blocks. "contiguous" reads only documented bytes: ANGLE_ACT, then the
# contiguous run FORCE_ACT, CURRENT, ERROR, STATUS, TEMP (1582..1623, 21 registers; public drivers already
# read ERROR..TEMP as one 9-register run). "single" also reads the undocumented bytes 1558..1581 in between.
# "per_block" makes one request per block at its documented start (the most conservative).
READ_PLANS: dict[str, tuple[Span, ...]] = {
    "per_block": tuple(span_of([b]) for b in STATE_BLOCKS),
    "contiguous": (span_of([ANGLE_ACT]), span_of([FORCE_ACT, CURRENT, ERROR, STATUS, TEMP])),
    "single": (span_of(STATE_BLOCKS),),
}

# ------------------------------------------------------------------------------------------ codes
STATUS_NAMES: dict[int, str] = {
    0: "releasing",
    1: "grasping",
    2: "position_reached",
    3: "force_reached",
    5: "overcurrent",
    6: "stall",
    7: "fault",
}
STATUS_CODES: dict[str, int] = {name: code for code, name in STATUS_NAMES.items()}

ERROR_BITS: dict[int, str] = {
    0: "stall",
    1: "over_temperature",
    2: "overcurrent",
    3: "motor",
    4: "communication",
}
ERROR_BIT_OF: dict[str, int] = {name: bit for bit, name in ERROR_BITS.items()}


def status_name(code: int) -> str:
    """Name of a STATUS byte; codes not in the manual become ``unknown_<code>``."""
    return STATUS_NAMES.get(int(code), f"unknown_{int(code)}")


def error_names(code: int) -> frozenset[str]:
    """Set of active error names in an ERROR byte; undocumented bits become ``unknown_bit<n>``."""
    code = int(code)
    return frozenset(ERROR_BITS.get(bit, f"unknown_bit{bit}") for bit in range(8) if code >> bit & 1)


def error_code(names: Iterable[str]) -> int:
    """Inverse of :func:`error_names` for the documented bits."""
    code = 0
    for name in names:
        if name not in ERROR_BIT_OF:
            raise ValueError(f"unknown error name {name!r}; known: {sorted(ERROR_BIT_OF)}")
        code |= 1 << ERROR_BIT_OF[name]
    return code


# --------------------------------------------------------------------------- bytes <-> registers
def registers_to_bytes(registers: Sequence[int], byte_order: ByteOrder | str = ByteOrder.LOW_FIRST) -> bytes:
    """Split registers into the hand's memory bytes (two per register, in ``byte_order``)."""
    order = ByteOrder(byte_order)
    out = bytearray()
    for reg in registers:
        lo, hi = int(reg) & 0xFF, (int(reg) >> 8) & 0xFF
        out += bytes((lo, hi)) if order is ByteOrder.LOW_FIRST else bytes((hi, lo))
    return bytes(out)


def bytes_to_registers(data: bytes | Sequence[int], byte_order: ByteOrder | str = ByteOrder.LOW_FIRST) -> list[int]:
    """Pack memory bytes two per register (an odd count is padded with 0)."""
    order = ByteOrder(byte_order)
    vals = [int(v) for v in data]
    for v in vals:
        if not 0 <= v <= 0xFF:
            raise ValueError(f"{v} does not fit a byte")
    if len(vals) % 2:
        vals.append(0)
    return [a | b << 8 if order is ByteOrder.LOW_FIRST else a << 8 | b for a, b in zip(vals[0::2], vals[1::2])]


def unpack_bytes(registers: Sequence[int], byte_order: ByteOrder | str = ByteOrder.LOW_FIRST,
                 count: int = HAND_DOF) -> list[int]:
    """The first ``count`` bytes held by ``registers``."""
    data = registers_to_bytes(registers, byte_order)
    if len(data) < count:
        raise ValueError(f"{len(registers)} registers hold {len(data)} bytes, need {count}")
    return list(data[:count])


def pack_bytes(values: Sequence[int], byte_order: ByteOrder | str = ByteOrder.LOW_FIRST) -> list[int]:
    return bytes_to_registers(values, byte_order)


def encode_values(block: RegisterBlock, values: Sequence[int], byte_order: ByteOrder | str) -> bytes:
    """Integer values -> the block's memory bytes (16-bit values stored so an aligned register reads them)."""
    if len(values) != block.values:
        raise ValueError(f"{block.name} holds {block.values} values, got {len(values)}")
    out = bytearray()
    for v in values:
        v = int(v)
        if block.width == 1:
            if not 0 <= v <= 0xFF:
                raise ValueError(f"{block.name}: {v} does not fit a byte")
            out.append(v)
            continue
        lo_ok, hi_ok = (-0x8000, 0x7FFF) if block.signed else (0, 0xFFFF)
        if not lo_ok <= v <= hi_ok:
            raise ValueError(f"{block.name}: {v} does not fit a {'signed' if block.signed else 'unsigned'} "
                             f"16-bit register")
        out += registers_to_bytes([v & 0xFFFF], byte_order)
    return bytes(out)


def decode_values(block: RegisterBlock, data: bytes, byte_order: ByteOrder | str) -> np.ndarray:
    """The block's memory bytes -> integer values (int64 array of length ``block.values``)."""
    if len(data) != block.n_bytes:
        raise ValueError(f"{block.name} has {block.n_bytes} bytes, got {len(data)}")
    if block.width == 1:
        return np.frombuffer(bytes(data), dtype=np.uint8).astype(np.int64)
    raw = np.asarray(bytes_to_registers(data, byte_order), dtype=np.int64)
    if block.signed:
        raw = np.where(raw >= 0x8000, raw - 0x10000, raw)
    return raw


def encode_block(block: RegisterBlock, values: Sequence[int],
                 byte_order: ByteOrder | str = ByteOrder.LOW_FIRST) -> list[int]:
    """Integer values -> the registers to write at ``block.address``."""
    return bytes_to_registers(encode_values(block, values, byte_order), byte_order)


def decode_block(block: RegisterBlock, registers: Sequence[int],
                 byte_order: ByteOrder | str = ByteOrder.LOW_FIRST) -> np.ndarray:
    """Registers read at ``block.address`` (``block.registers`` of them) -> integer values."""
    if len(registers) != block.registers:
        raise ValueError(f"{block.name} is read as {block.registers} registers, got {len(registers)}")
    return decode_values(block, registers_to_bytes(registers, byte_order)[:block.n_bytes], byte_order)


def decode_span(span: Span, registers: Sequence[int],
                byte_order: ByteOrder | str = ByteOrder.LOW_FIRST) -> dict[RegisterBlock, np.ndarray]:
    """Registers read for ``span`` -> values of each of its blocks."""
    if len(registers) != span.registers:
        raise ValueError(f"span at {span.address} is {span.registers} registers, got {len(registers)}")
    data = registers_to_bytes(registers, byte_order)
    out = {}
    for b in span.blocks:
        off = b.address - span.address
        out[b] = decode_values(b, data[off:off + b.n_bytes], byte_order)
    return out
