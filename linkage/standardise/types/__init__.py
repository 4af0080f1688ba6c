"""The registry of field types: ``type: NAME`` in a config's ``fields:`` picks one.

Each type is one module: its options (a pydantic model, so a wrong option is a config
error with its key path), its cleaning SQL, the keys it derives and its default
comparison levels. A new type is a module with a ``FieldType`` subclass (``type:
Literal["x"]``), added to ``TYPES`` and ``AnyFieldType`` below.

Most types read one column and clean each distinct value (``clean``). Two are special:
``person_name`` reads several (its ``parts``: ``inputs()``) and builds its keys itself
(``build``); ``set`` reads none and is made from other fields.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from linkage.standardise.types.base import CleanContext, FieldType, Key
from linkage.standardise.types.category import CategoryType
from linkage.standardise.types.date import DateType
from linkage.standardise.types.email import EmailType
from linkage.standardise.types.encoded import EncodedType
from linkage.standardise.types.identifier import IdentifierType
from linkage.standardise.types.listof import ListType
from linkage.standardise.types.name import NameType
from linkage.standardise.types.number import NumberType
from linkage.standardise.types.person_name import PersonNameType
from linkage.standardise.types.postcode import PostcodeType
from linkage.standardise.types.set import SetType
from linkage.standardise.types.text import TextType

TYPES: dict[str, type[FieldType]] = {
    t.model_fields["type"].default: t
    for t in (NameType, DateType, IdentifierType, PostcodeType, TextType, NumberType, EmailType, CategoryType, ListType,
              PersonNameType, SetType, EncodedType)
}

# A declared field's options, chosen by its ``type``.
AnyFieldType = Annotated[
    NameType | DateType | IdentifierType | PostcodeType | TextType | NumberType | EmailType | CategoryType | ListType
    | PersonNameType | SetType | EncodedType,
    Field(discriminator="type"),
]

__all__ = ["TYPES", "AnyFieldType", "CleanContext", "FieldType", "Key", *(t.__name__ for t in TYPES.values())]
