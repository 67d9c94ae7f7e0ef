"""tokenwire gateway: where clients meet the system."""
