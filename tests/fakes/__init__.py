"""Test doubles shared by the unit, integration and e2e tests (see connector_app.FakeConnector)."""
