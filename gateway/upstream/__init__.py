"""Client side of the upstream Assistants v1 messages API."""
