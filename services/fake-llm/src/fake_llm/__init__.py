"""An OpenAI-compatible fake model: the embedded default model and the benchmarks' load."""
