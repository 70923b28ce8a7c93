"""The typed protocol methods of the connector client (``get_actors``, ``save_connection`` …): each builds its
request members, calls, and checks the shape of the payload it returns."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from portal.connectors.client.answers import Reply
from portal.connectors.client.errors import _short


class ProtocolMethods:
    """Part of :class:`~portal.connectors.client.connector_client.ConnectorClient`: its typed helpers and payload
    checks (uses the client's ``call`` and ``_bad``)."""

    # -- payload checks ----------------------------------------------------------------------------------

    def _member(self, reply: Reply, name: str) -> Any:
        if name not in reply.data:
            raise self._bad(reply.method, f"The member {name} is missing.")
        return reply.data[name]

    def _objects(self, reply: Reply, name: str, *, required_key: str | None = None) -> list[dict]:
        value = self._member(reply, name)
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise self._bad(reply.method, f"{name} must be a list of objects.", f"{name} is {_short(value)}")
        if required_key is not None:
            for item in value:
                if not isinstance(item.get(required_key), str) or not item[required_key]:
                    raise self._bad(reply.method, f"An entry of {name} has no {required_key}.",
                                    f"entry {_short(item)}")
        return value

    def _actors(self, reply: Reply, name: str = "Actors") -> list[dict]:
        actors = self._objects(reply, name)
        for actor in actors:
            values = actor.get("FieldValues", {})
            if values is not None and not isinstance(values, dict):
                raise self._bad(reply.method, "An actor's FieldValues is not an object.", f"actor {_short(actor)}")
        return actors

    def _strings(self, reply: Reply, name: str) -> list[str]:
        value = self._member(reply, name)
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self._bad(reply.method, f"{name} must be a list of strings.", f"{name} is {_short(value)}")
        return value

    def _list_items(self, reply: Reply) -> dict[str, str]:
        value = self._member(reply, "ListItems")
        if not isinstance(value, dict) or not all(isinstance(text, str) for text in value.values()):
            raise self._bad(reply.method, "ListItems must be an object of texts.", f"ListItems is {_short(value)}")
        return value

    # -- typed helpers -----------------------------------------------------------------------------------

    def get_config_data(self) -> list[dict]:
        return self._objects(self.call("GetConfigData"), "FieldMetaDataObjects", required_key="FieldKey")

    def test_config_data(self, info: dict) -> Reply:
        return self.call("TestConfigData", {"ConnectionInfo": info})

    def save_connection(self, guid: str, info: dict) -> Reply:
        return self.call("SaveConnection", {"ConnectionGuid": guid, "ConnectionInfo": info})

    def test_connection(self, guid: str) -> Reply:
        return self.call("TestConnection", {"ConnectionGuid": guid})

    def delete_connection(self, guid: str) -> Reply:
        return self.call("DeleteConnection", {"ConnectionGuid": guid})

    def get_supported_actor_types(self, guid: str) -> list[str]:
        return self._strings(self.call("GetSupportedActorTypes", {"ConnectionGuid": guid}), "Items")

    def get_supported_actor_type_fields(self, guid: str, actor_type: str) -> list[dict]:
        reply = self.call("GetSupportedActorTypeFields", {"ConnectionGuid": guid, "ActorType": actor_type})
        return self._objects(reply, "FieldMetaDataObjects", required_key="FieldKey")

    def get_searchable_fields(self, guid: str, actor_type: str) -> list[str]:
        reply = self.call("GetSearchableFields", {"ConnectionGuid": guid, "ActorType": actor_type})
        return self._strings(reply, "Items")

    def get_actors(self, guid: str, actor_type: str, erp_keys: Sequence[str], field_keys: Sequence[str]) -> list[dict]:
        reply = self.call("GetActors", {"ConnectionGuid": guid, "ActorType": actor_type, "ErpKeys": list(erp_keys),
                                        "FieldKeys": list(field_keys)})
        return self._actors(reply)

    def search_actors(self, guid: str, actor_type: str, search_text: str, field_keys: Sequence[str],
                      limit: int | None = None) -> list[dict]:
        body = {"ConnectionGuid": guid, "ActorType": actor_type, "SearchText": search_text,
                "FieldKeys": list(field_keys)}
        if limit is not None:
            body["Limit"] = limit
        return self._actors(self.call("SearchActors", body))

    def search_actor_by_parent(self, guid: str, actor_type: str, search_text: str, parent_actor_type: str,
                               parent_erp_key: str, field_keys: Sequence[str]) -> list[dict]:
        reply = self.call("SearchActorByParent", {
            "ConnectionGuid": guid, "ActorType": actor_type, "SearchText": search_text,
            "ParentActorType": parent_actor_type, "ParentErpKey": parent_erp_key, "FieldKeys": list(field_keys)})
        return self._actors(reply)

    def search_actors_advanced(self, guid: str, actor_type: str, restrictions: Sequence[dict],
                               field_keys: Sequence[str]) -> list[dict]:
        reply = self.call("SearchActorsAdvanced", {"ConnectionGuid": guid, "ActorType": actor_type,
                                                   "Restrictions": list(restrictions), "FieldKeys": list(field_keys)})
        return self._actors(reply)

    def create_actor(self, guid: str, actor: dict, idempotency_key: str | None = None) -> dict:
        body = {"ConnectionGuid": guid, "Actor": actor}
        if idempotency_key is not None:
            body["IdempotencyKey"] = idempotency_key
        reply = self.call("CreateActor", body)
        created = self._member(reply, "Actor")
        if not isinstance(created, dict):
            raise self._bad(reply.method, "Actor must be an object.", f"Actor is {_short(created)}")
        if not isinstance(created.get("ErpKey"), str) or not created["ErpKey"]:
            raise self._bad(reply.method, "The created actor has no ErpKey.", f"Actor is {_short(created)}")
        return created

    def save_actors(self, guid: str, actors: Sequence[dict]) -> list[dict]:
        return self._actors(self.call("SaveActors", {"ConnectionGuid": guid, "Actors": list(actors)}))

    def get_list(self, guid: str, list_name: str) -> dict[str, str]:
        return self._list_items(self.call("GetList", {"ConnectionGuid": guid, "ListName": list_name}))

    def get_list_items(self, guid: str, list_name: str, keys: Sequence[str]) -> dict[str, str]:
        reply = self.call("GetListItems", {"ConnectionGuid": guid, "ListName": list_name,
                                           "ListItemKeys": list(keys)})
        return self._list_items(reply)

    def get_actors_by_timestamp(self, guid: str, updated_on_or_after: str, actor_type: str,
                                field_keys: Sequence[str], limit: int | None = None,
                                cursor: str | None = None) -> tuple[list[dict], str | None]:
        body = {"ConnectionGuid": guid, "UpdatedOnOrAfter": updated_on_or_after or "", "ActorType": actor_type,
                "FieldKeys": list(field_keys)}
        if limit is not None:
            body["Limit"] = limit
        if cursor is not None:
            body["Cursor"] = cursor
        reply = self.call("GetActorsByTimestamp", body)
        actors = self._actors(reply)
        next_cursor = reply.get("NextCursor")
        if next_cursor is not None and not isinstance(next_cursor, str):
            raise self._bad(reply.method, "NextCursor must be a string or null.", f"NextCursor is {_short(next_cursor)}")
        return actors, next_cursor or None
