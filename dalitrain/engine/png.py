"""A minimal PNG writer (8-bit RGB, one zlib-compressed IDAT chunk), so that reports can draw heatmaps without
matplotlib. Format: signature, IHDR, IDAT (each row prefixed with filter type 0), IEND; every chunk is
length + type + data + CRC-32 of type and data.
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from dalitrain.fileio import write_atomic

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(rgb: np.ndarray) -> bytes:
    """rgb: [H, W, 3] uint8."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"encode_png expects an [H, W, 3] uint8 array, got {rgb.dtype} {rgb.shape}")
    height, width, _ = rgb.shape
    raw = b"".join(b"\x00" + row.tobytes() for row in np.ascontiguousarray(rgb))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8 bits, truecolour, deflate, no interlace
    return SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 9)) + _chunk(b"IEND", b"")


def write_png(path: str | Path, rgb: np.ndarray) -> None:
    write_atomic(path, encode_png(rgb))


def diverging_colours(values: np.ndarray) -> np.ndarray:
    """[...] values in [-1, 1] -> [..., 3] uint8: blue (-1) through white (0) to red (+1)."""
    v = np.clip(values, -1.0, 1.0)[..., None]
    white = np.array([255.0, 255.0, 255.0])
    red, blue = np.array([178.0, 24.0, 43.0]), np.array([33.0, 102.0, 172.0])
    colour = np.where(v >= 0, white + v * (red - white), white - v * (blue - white))
    return colour.round().astype(np.uint8)
