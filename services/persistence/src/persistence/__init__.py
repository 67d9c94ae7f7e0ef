"""tokenwire persistence: the only service that touches the database."""
