"""The connector protocol (connector-protocol.md): its client, and the connectors built into the portal."""
