"""tokenwire LLM worker: user messages in, streamed reply events out."""
