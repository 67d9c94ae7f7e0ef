"""`python -m fake_llm`: serve the fake model with the settings from the environment."""

import uvicorn

from fake_llm.main import create_app
from fake_llm.settings import FakeLLMSettings


def main() -> None:
    settings = FakeLLMSettings()
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        access_log=False,
        loop="uvloop",
        http="httptools",
    )


if __name__ == "__main__":
    main()
