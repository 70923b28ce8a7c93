"""Business rules. Services take ids and plain values and never touch `request`."""
