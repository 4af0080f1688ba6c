"""``type: list``: several values of one type in one column (aliases, alias dates of
birth, previous surnames), split on ``separator`` (default: the source's
``list_separator``). Each element is cleaned as its type (``of:``) says; the field is the
sorted distinct array of the elements that survive, missing when none does. The
default comparison level is ``overlap`` (a value in common)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from linkage.standardise.types.base import FieldType
from linkage.standardise.types.category import CategoryType
from linkage.standardise.types.date import DateType
from linkage.standardise.types.email import EmailType
from linkage.standardise.types.identifier import IdentifierType
from linkage.standardise.types.name import NameType
from linkage.standardise.types.number import NumberType
from linkage.standardise.types.postcode import PostcodeType
from linkage.standardise.types.text import TextType

ElementType = NameType | DateType | IdentifierType | PostcodeType | TextType | NumberType | EmailType | CategoryType


class ListType(FieldType):
    type: Literal["list"] = "list"
    of: ElementType = Field(discriminator="type")
    separator: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_column(self) -> "ListType":
        if isinstance(self.of, DateType) and self.of.parts:
            raise ValueError("of.parts: a list's elements are read from one column; a date in parts is a field of its own")
        return self

    @property
    def value_type(self) -> str:  # type: ignore[override]
        return self.of.value_type + "[]"

    @property
    def is_identifying(self) -> bool:
        return self.of.is_identifying if self.identifying is None else self.identifying

    def column_names(self, field: str) -> dict[str, str]:
        return {field: self.value_type}

    def default_levels(self, field: str) -> list[dict[str, Any]]:
        return [{"overlap": field}]
