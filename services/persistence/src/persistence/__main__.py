"""`python -m persistence`: run the persistence service with settings from the environment."""

import uvloop

from persistence.main import create_app
from persistence.settings import PersistenceSettings
from shared.logs import configure_logging


def main() -> None:
    settings = PersistenceSettings()
    configure_logging("persistence", settings.log_level, json_lines=settings.log_json)
    uvloop.run(create_app(settings).run())


if __name__ == "__main__":
    main()
