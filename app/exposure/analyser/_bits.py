"""Sets of leaves as non-negative Python ints (bit n: the leaf numbered n), and what the
analyser needs of them beyond ``|``, ``&`` and ``^``: listing their bits quickly, densely or
sparsely, and testing one bit in constant time."""

from collections.abc import Callable, Iterator
from itertools import islice

_BYTE_BITS: tuple[tuple[int, ...], ...] = tuple(
    tuple(bit for bit in range(8) if value >> bit & 1) for value in range(256)
)


def lowest(bits: int, limit: int, width: int = 0) -> list[int]:
    """Up to `limit` set bit numbers of a non-negative int, lowest first (`ascending` from the
    bottom, its first window `width` bits wide or wide enough to hold `limit` when dense)."""
    return list(islice(ascending(bits, 0, max(width, 64 * max(limit, 1))), limit))


def ascending(bits: int, start: int, width: int = 256) -> Iterator[int]:
    """The set bit numbers of a non-negative int from `start` up, lowest first.

    Works window by window from `start` (each next one wider): a window is cut with a mask
    (cost: the window's size), so the first few never copy the whole 100k-bit int.
    """
    end = bits.bit_length()
    while start < end:
        top = min(end, start + width)
        window = (bits & ((1 << top) - 1)) >> start
        while window:
            low = window & -window
            yield start + low.bit_length() - 1
            window ^= low
        start = top
        width *= 4


def indices(bits: int) -> list[int]:
    """The set bit numbers of a non-negative int, ascending."""
    count = bits.bit_count()
    if count <= 64:  # sparse: skip the zero bytes without looking at them
        return lowest(bits, count)
    found: list[int] = []
    data = bits.to_bytes((bits.bit_length() + 7) // 8, "little")
    for position, byte in enumerate(data):
        if byte:
            base = position << 3
            found.extend([base + bit for bit in _BYTE_BITS[byte]])
    return found


def from_indices(numbers: list[int]) -> int:
    """The set of these bit numbers."""
    if len(numbers) < 32:
        bits = 0
        for index in numbers:
            bits |= 1 << index
        return bits
    buffer = bytearray((max(numbers) >> 3) + 1)
    for index in numbers:
        buffer[index >> 3] |= 1 << (index & 7)
    return int.from_bytes(buffer, "little")


def bit_test(bits: int) -> Callable[[int], bool]:
    """A constant-time membership test for a non-negative int (Python's is O(size)); the int is
    converted to bytes on the first test only."""
    data = b""

    def test(index: int) -> bool:
        nonlocal data
        if not data and bits:
            data = bits.to_bytes((bits.bit_length() + 7) // 8, "little")
        byte = index >> 3
        return byte < len(data) and bool(data[byte] >> (index & 7) & 1)

    return test
