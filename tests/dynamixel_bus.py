"""A simulated Dynamixel protocol 2.0 servo bus on the master side of a pseudo-terminal.

Written from the ROBOTIS protocol 2.0 spec, independently of dynamixel_sdk, so tests of the
leader arm exercise the SDK against a second implementation:

    instruction: FF FF FD 00 | id | len_l len_h | instruction | params... | crc_l crc_h
    status:      FF FF FD 00 | id | len_l len_h | 0x55 | error | params... | crc_l crc_h

`len` counts instruction/status byte, error, params and CRC after byte stuffing. Stuffing
inserts an extra FD after any FF FF FD from the instruction byte on; the CRC (CRC-16,
polynomial 0x8005, init 0, MSB first) covers header to last param after stuffing.
Instructions with a bad CRC are dropped (and counted), as a servo would.
"""

from __future__ import annotations

import os
import select
import struct
import threading
from dataclasses import dataclass, field

HEADER = b"\xff\xff\xfd\x00"
BROADCAST = 0xFE
PING, READ, WRITE, SYNC_READ, STATUS = 0x01, 0x02, 0x03, 0x82, 0x55
ADDR_MODEL, ADDR_FIRMWARE, ADDR_TORQUE_ENABLE, ADDR_PRESENT_POSITION = 0, 6, 64, 132
XL330_M288 = 1200


def crc16(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def stuff(body: bytes) -> bytes:
    """Insert FD after every FF FF FD in `body` (instruction byte onward)."""
    out = bytearray()
    for b in body:
        out.append(b)
        if len(out) >= 3 and out[-3:] == b"\xff\xff\xfd":
            out.append(0xFD)
    return bytes(out)


def unstuff(body: bytes) -> bytes:
    """Drop the FD that stuffing added after each FF FF FD."""
    out, skipped = bytearray(), False
    for b in body:
        if b == 0xFD and out[-3:] == b"\xff\xff\xfd" and not skipped:
            skipped = True
            continue
        out.append(b)
        skipped = False
    return bytes(out)


def packet(servo_id: int, body: bytes) -> bytes:
    """A whole packet (header, id, length, stuffed body, CRC) around an unstuffed body."""
    body = stuff(body)
    head = HEADER + bytes([servo_id]) + struct.pack("<H", len(body) + 2)
    return head + body + struct.pack("<H", crc16(head + body))


def instruction_packet(servo_id: int, instruction: int, params: bytes = b"") -> bytes:
    return packet(servo_id, bytes([instruction]) + params)


@dataclass
class Servo:
    model: int = XL330_M288
    table: bytearray = field(default_factory=lambda: bytearray(256))

    def __post_init__(self):
        self.table[ADDR_MODEL : ADDR_MODEL + 2] = struct.pack("<H", self.model)
        self.table[ADDR_FIRMWARE] = 52
        self.table[ADDR_TORQUE_ENABLE] = 1  # on, so the test sees the leader switch it off

    @property
    def position(self) -> int:
        return struct.unpack_from("<i", self.table, ADDR_PRESENT_POSITION)[0]

    @position.setter
    def position(self, raw: int) -> None:
        struct.pack_into("<i", self.table, ADDR_PRESENT_POSITION, raw)


class ServoBus:
    """Servos answering on `fd` (a pty master) from a thread. Faults for tests:
    `drop_replies[id] = n` swallows that servo's next n replies, `corrupt_replies[id] = n`
    sends its next n replies with a wrong CRC."""

    def __init__(self, fd: int, servos: dict[int, Servo]):
        self.fd, self.servos = fd, servos
        self.drop_replies: dict[int, int] = {}
        self.corrupt_replies: dict[int, int] = {}
        self.bad_crc_instructions = 0
        self.instructions: list[tuple[int, int]] = []  # (id, instruction) of each good packet
        self._buffer = b""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=2)

    def _run(self) -> None:
        while not self._stop.is_set():
            if not select.select([self.fd], [], [], 0.02)[0]:
                continue
            try:
                self._buffer += os.read(self.fd, 4096)
            except OSError:  # the slave side closed
                continue
            for servo_id, body in self._take_packets():
                self._handle(servo_id, body[0], body[1:])

    def _take_packets(self):
        """Complete packets in the buffer as (id, unstuffed body without CRC)."""
        while True:
            start = self._buffer.find(HEADER)
            if start < 0:
                self._buffer = self._buffer[-3:]
                return
            self._buffer = self._buffer[start:]
            if len(self._buffer) < 7:
                return
            length = struct.unpack_from("<H", self._buffer, 5)[0]
            if len(self._buffer) < 7 + length:
                return
            whole, self._buffer = self._buffer[: 7 + length], self._buffer[7 + length :]
            if crc16(whole[:-2]) != struct.unpack("<H", whole[-2:])[0]:
                self.bad_crc_instructions += 1
                continue
            yield whole[4], unstuff(whole[7:-2])

    def _handle(self, servo_id: int, instruction: int, params: bytes) -> None:
        self.instructions.append((servo_id, instruction))
        if instruction == SYNC_READ and servo_id == BROADCAST:
            address, size = struct.unpack_from("<HH", params)
            for sid in params[4:]:  # each listed servo answers in turn
                if sid in self.servos:
                    self._reply(sid, bytes(self.servos[sid].table[address : address + size]))
            return
        servo = self.servos.get(servo_id)
        if servo is None:
            return  # nobody with that id on the bus: silence
        if instruction == PING:
            self._reply(servo_id, struct.pack("<H", servo.model) + bytes([servo.table[6]]))
        elif instruction == READ:
            address, size = struct.unpack_from("<HH", params)
            self._reply(servo_id, bytes(servo.table[address : address + size]))
        elif instruction == WRITE:
            address = struct.unpack_from("<H", params)[0]
            servo.table[address : address + len(params) - 2] = params[2:]
            self._reply(servo_id, b"")
        else:
            self._reply(servo_id, b"", error=0x02)  # instruction error

    def _reply(self, servo_id: int, params: bytes, error: int = 0) -> None:
        if self.drop_replies.get(servo_id, 0) > 0:
            self.drop_replies[servo_id] -= 1
            return
        data = packet(servo_id, bytes([STATUS, error]) + params)
        if self.corrupt_replies.get(servo_id, 0) > 0:
            self.corrupt_replies[servo_id] -= 1
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
        os.write(self.fd, data)
