"""Why the gateway would not do what a client asked, and the one `error` frame that says so."""

from dataclasses import dataclass

from shared.frames import ErrorCode, ErrorFrame


@dataclass(frozen=True, slots=True)
class Refusal:
    code: ErrorCode
    detail: str
    retry_after_s: float | None = None

    def frame(self) -> str:
        """The `error` frame telling the client why, and when to try again."""
        return ErrorFrame(
            code=self.code, detail=self.detail, retry_after_s=self.retry_after_s
        ).model_dump_json()


NOT_STORED = Refusal("unavailable", "message not stored; send it again", 1.0)
CANCEL_UNCHECKED = Refusal("unavailable", "cancel not checked; send it again", 1.0)
