"""Constants and response builders of the fixed connector protocol (shared/docs/connector-protocol.md).

Pure Python, no Flask: connectors built into the portal and the client both use it.
"""

from __future__ import annotations

from enum import StrEnum

ZERO_GUID = "00000000-0000-0000-0000-000000000000"
UNKNOWN_CONNECTION_ID = "UNKNOWN_CONNECTION_ID"

METHODS = (
    "GetConfigData",
    "TestConfigData",
    "SaveConnection",
    "TestConnection",
    "DeleteConnection",
    "GetSupportedActorTypes",
    "GetSupportedActorTypeFields",
    "GetSearchableFields",
    "GetActors",
    "SearchActors",
    "SearchActorByParent",
    "SearchActorsAdvanced",
    "CreateActor",
    "SaveActors",
    "GetList",
    "GetListItems",
    "GetActorsByTimestamp",
)

ACTOR_TYPES = ("Customer", "Supplier", "Partner", "Person", "Project")
FIELD_TYPES = ("Checkbox", "Text", "Password", "Integer", "Double", "List", "Date", "Label")
ACCESS_VALUES = ("Normal", "Mandatory", "ReadOnly")

# Operators per field type (SearchRestriction.Operator).
OPERATORS: dict[str, tuple[str, ...]] = {
    "Text": ("=", "begins", "contains", "ends", "notbegins", "notcontains", "notends", "isnot", "between"),
    "Integer": ("=", ">", "<", ">=", "<=", "!=", "between"),
    "Double": ("=", ">", "<", ">=", "<=", "!=", "between"),
    "Checkbox": ("=",),
    "List": ("oneof", "notoneof"),
    "Date": ("=", "before", "after", "beforeOrEqual", "afterOrEqual", "between"),
}
OPERATORS["Password"] = OPERATORS["Text"]
OPERATORS["Label"] = OPERATORS["Text"]
SPECIAL_SEARCH_KEYS = ("ParentErpKey", "ParentActorType")


class State(StrEnum):
    OK = "Ok"
    OK_WITH_INFO = "OkWithInfo"
    WARNING = "Warning"
    ERROR = "Error"


def ok_response(**payload) -> dict:
    """A successful response with the given payload members."""
    return {"IsOk": True, "State": State.OK.value, "UserExplanation": "", "TechExplanation": "", "ErrorCode": "",
            **payload}


def warning_response(user_explanation: str, tech_explanation: str = "", **payload) -> dict:
    """Done, but degraded: the portal shows this rather than treating it as a clean success."""
    return {"IsOk": True, "State": State.WARNING.value, "UserExplanation": user_explanation,
            "TechExplanation": tech_explanation, "ErrorCode": "", **payload}


def error_response(user_explanation: str, tech_explanation: str = "", error_code: str = "") -> dict:
    return {"IsOk": False, "State": State.ERROR.value, "UserExplanation": user_explanation,
            "TechExplanation": tech_explanation, "ErrorCode": error_code}


def field_metadata(key: str, name: str, field_type: str = "Text", *, description: str = "", list_name: str = "",
                   default: str = "", max_length: int = 0, access: str = "Normal", rank: int = 0) -> dict:
    """A FieldMetadataInfo document."""
    return {"FieldKey": key, "DisplayName": name, "DisplayDescription": description, "FieldType": field_type,
            "ListName": list_name, "DefaultValue": default, "MaxLength": max_length, "Access": access,
            "Rank": rank}
