class ClientError(Exception):
    """A problem with what the browser sent; the consumer turns it into one `error` message shape."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    def as_event(self) -> dict:
        return {"type": "error", "code": self.code, "message": self.message}
