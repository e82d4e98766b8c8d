"""The one table of ONNX tensor data types: bit widths and byte sizes, spelled as in the ONNX spec."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["DataType", "bitwidth", "is_floating", "is_integer", "nbytes"]


class DataType(IntEnum):
    """``TensorProto.DataType`` values, names exactly as in onnx.proto."""

    UNDEFINED = 0
    FLOAT = 1
    UINT8 = 2
    INT8 = 3
    UINT16 = 4
    INT16 = 5
    INT32 = 6
    INT64 = 7
    STRING = 8
    BOOL = 9
    FLOAT16 = 10
    DOUBLE = 11
    UINT32 = 12
    UINT64 = 13
    COMPLEX64 = 14
    COMPLEX128 = 15
    BFLOAT16 = 16
    FLOAT8E4M3FN = 17
    FLOAT8E4M3FNUZ = 18
    FLOAT8E5M2 = 19
    FLOAT8E5M2FNUZ = 20
    UINT4 = 21
    INT4 = 22
    FLOAT4E2M1 = 23
    FLOAT8E8M0 = 24
    UINT2 = 25
    INT2 = 26
    FLOAT6E2M3 = 27
    FLOAT6E3M2 = 28

    @classmethod
    def from_value(cls, value: int) -> DataType | None:
        """The member for a raw enum value, or None for a value this table does not know."""
        try:
            return cls(value)
        except ValueError:
            return None


# Bits per element. STRING and UNDEFINED have no fixed width (0).
_BITWIDTH: dict[DataType, int] = {
    DataType.UNDEFINED: 0,
    DataType.FLOAT: 32,
    DataType.UINT8: 8,
    DataType.INT8: 8,
    DataType.UINT16: 16,
    DataType.INT16: 16,
    DataType.INT32: 32,
    DataType.INT64: 64,
    DataType.STRING: 0,
    DataType.BOOL: 8,
    DataType.FLOAT16: 16,
    DataType.DOUBLE: 64,
    DataType.UINT32: 32,
    DataType.UINT64: 64,
    DataType.COMPLEX64: 64,
    DataType.COMPLEX128: 128,
    DataType.BFLOAT16: 16,
    DataType.FLOAT8E4M3FN: 8,
    DataType.FLOAT8E4M3FNUZ: 8,
    DataType.FLOAT8E5M2: 8,
    DataType.FLOAT8E5M2FNUZ: 8,
    DataType.UINT4: 4,
    DataType.INT4: 4,
    DataType.FLOAT4E2M1: 4,
    DataType.FLOAT8E8M0: 8,
    DataType.UINT2: 2,
    DataType.INT2: 2,
    DataType.FLOAT6E2M3: 6,
    DataType.FLOAT6E3M2: 6,
}

_FLOATING = frozenset(
    {
        DataType.FLOAT,
        DataType.FLOAT16,
        DataType.DOUBLE,
        DataType.BFLOAT16,
        DataType.COMPLEX64,
        DataType.COMPLEX128,
        DataType.FLOAT8E4M3FN,
        DataType.FLOAT8E4M3FNUZ,
        DataType.FLOAT8E5M2,
        DataType.FLOAT8E5M2FNUZ,
        DataType.FLOAT8E8M0,
        DataType.FLOAT4E2M1,
        DataType.FLOAT6E2M3,
        DataType.FLOAT6E3M2,
    }
)

_INTEGER = frozenset(
    {
        DataType.UINT8,
        DataType.INT8,
        DataType.UINT16,
        DataType.INT16,
        DataType.INT32,
        DataType.INT64,
        DataType.UINT32,
        DataType.UINT64,
        DataType.UINT4,
        DataType.INT4,
        DataType.UINT2,
        DataType.INT2,
    }
)


def bitwidth(data_type: DataType) -> int:
    """Bits per element (0 for STRING and UNDEFINED, whose size is not fixed)."""
    return _BITWIDTH[data_type]


def nbytes(data_type: DataType, num_elements: int) -> int:
    """Bytes that ``num_elements`` packed elements of ``data_type`` take, rounded up to whole bytes.

    Sub-byte types (INT4, UINT2, FLOAT6E2M3, ...) are packed densely as onnx.proto prescribes:
    ``ceil(num_elements * bits / 8)``. STRING has no fixed width and returns 0.
    """
    return (num_elements * _BITWIDTH[data_type] + 7) // 8


def is_floating(data_type: DataType) -> bool:
    """True for floating-point (including complex and 4/6/8-bit float) types."""
    return data_type in _FLOATING


def is_integer(data_type: DataType) -> bool:
    """True for signed and unsigned integer types of any width (not BOOL)."""
    return data_type in _INTEGER
