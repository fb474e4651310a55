"""What text the record can hold (pure: the realtime layer checks browser input with it too)."""


def storable_text(text: str) -> str:
    """`text` as the database can hold it: no NUL character (PostgreSQL text refuses it), unpaired
    surrogates (not encodable as UTF-8) replaced. Whatever the source, learner or model."""
    return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
