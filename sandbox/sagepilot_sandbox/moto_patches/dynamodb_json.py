"""moto's DynamoDB answers carry their AttributeValues as they are, in wire form (installed by faithful.install()).

What DynamoDB does: it answers GetItem, BatchGetItem, Query, Scan, UpdateItem, etc. with items in the
AttributeValue JSON form (`{"S": "x"}`, `{"M": {...}}`, ...), at a cost unrelated to how the answer is
encoded. What moto 5.2.5 does: its handlers already hold each item in that wire form (`dynamo_to_dict`),
then its generic response serializer (`moto/core/serialize.py`, `BaseJSONSerializer`) walks every
AttributeValue against its botocore shape: for each of the shape's 10 members (S, N, B, SS, NS, BS, M, L,
NULL, BOOL) it builds a value-picker context and tries up to six key aliases, to find the one member present,
and recurses the same way into M and L. For a BatchGetItem of 100 consistent reads of small items (4
attributes) in a table of 10,000, that is 66 ms per call, 90% of it in the serializer (the
lead's profile).

This module: where the JSON serializer of DynamoDB meets an AttributeValue that is a plain dict with exactly
one of the keys S, N, SS, NS, M, L, NULL, BOOL, holding what moto's walk would copy unchanged (str for S and N,
lists of str for SS and NS, bool for NULL and BOOL, and, recursively, a dict of str to such AttributeValues
for M and a list of them for L), it puts that dict in the answer as it is. Anything else takes moto's
generic path for the whole value: binary (B, BS, which moto base64-encodes, also deep inside an M or L), a
DynamoType or other object, a dict with another key, none or several, a value of another Python type, or a
serializer with response transformers (`RESPONSE_KEY_PATH_TO_TRANSFORMER`, none for DynamoDB) or another
value picker that could change what the walk finds. The response bytes are the same either way (tests/
sandbox/test_sandbox_dynamodb_json.py compares the raw bodies, patch on and off, for every type and the
operations that return items). Measured (shared 2-vCPU machine, moto's method and the patch alternated in
one process, 3 rounds of 20 calls; the script of the lead's profile, /tmp/prof_bgi.py): that BatchGetItem
from 41-61 ms to 8-12 ms per call, the client's own parse of the answer included; the test file prints the
same comparison (70 -> 16 ms under pytest).

Errors (ConditionalCheckFailed's Item, TransactionCanceledException's CancellationReasons) are not
serialized by this path in moto 5.2.5 (the exception's body is `dynamo_json_dump`ed) and are unchanged.
"""

from __future__ import annotations

from typing import Any

_STRING_KEYS = frozenset({"S", "N"})
_SET_KEYS = frozenset({"SS", "NS"})
_FLAG_KEYS = frozenset({"NULL", "BOOL"})
_MEMBERS = frozenset({"S", "N", "B", "SS", "NS", "BS", "M", "L", "NULL", "BOOL"})  # the shape's, checked at install


def is_wire_value(value: Any) -> bool:
    """True if `value` is an AttributeValue that moto's generic serializer would copy unchanged."""
    if type(value) is not dict or len(value) != 1:
        return False
    ((key, member),) = value.items()
    if key in _STRING_KEYS:
        return type(member) is str
    if key == "M":
        return type(member) is dict and all(type(name) is str and is_wire_value(item) for name, item in member.items())
    if key == "L":
        return type(member) is list and all(is_wire_value(item) for item in member)
    if key in _FLAG_KEYS:
        return type(member) is bool
    if key in _SET_KEYS:
        return type(member) is list and all(type(item) is str for item in member)
    return False  # B, BS (base64-encoded by moto), or a key that is not a member


def install() -> None:
    from botocore.model import StructureShape
    from moto.core.serialize import BaseJSONSerializer, DefaultAttributePicker, XFormedAttributePicker

    plain_pickers = (XFormedAttributePicker, DefaultAttributePicker)

    def plain_picker(serializer: Any) -> bool:
        """The serializer finds members as moto's DynamoDB handler sets it up: by key, nothing transformed."""
        picker = serializer._value_picker
        return type(picker) in plain_pickers and not getattr(picker, "response_transformers", None)

    serializer_cls: Any = BaseJSONSerializer
    if getattr(serializer_cls, "_sagepilot_wire_attribute_values", False):
        return
    original = serializer_cls._serialize_type_structure

    def _serialize_type_structure(self: Any, serialized: Any, value: Any, shape: StructureShape, key: str) -> None:
        if (
            key
            and shape.name == "AttributeValue"
            and self.service_model.service_name == "dynamodb"
            and is_wire_value(value)
            and plain_picker(self)
        ):
            serialized[self.get_serialized_name(shape, key)] = value
            return
        original(self, serialized, value, shape, key)

    _check_shape()
    serializer_cls._serialize_type_structure = _serialize_type_structure
    serializer_cls._sagepilot_wire_attribute_values = True
    serializer_cls._sagepilot_original_serialize_type_structure = original


def _check_shape() -> None:
    """Refuse to install if botocore's AttributeValue is no longer the shape this module was written for."""
    import botocore.session

    shape: Any = botocore.session.get_session().get_service_model("dynamodb").shape_for("AttributeValue")
    if set(shape.members) != _MEMBERS:
        raise RuntimeError(f"DynamoDB's AttributeValue has members {sorted(shape.members)}, not {sorted(_MEMBERS)}")
