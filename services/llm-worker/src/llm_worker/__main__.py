"""`python -m llm_worker`: run one worker with settings from the environment."""

import uvloop

from llm_worker.main import create_app
from llm_worker.settings import WorkerSettings
from shared.logs import configure_logging


def main() -> None:
    settings = WorkerSettings()
    configure_logging("llm-worker", settings.log_level, json_lines=settings.log_json)
    uvloop.run(create_app(settings).run())


if __name__ == "__main__":
    main()
