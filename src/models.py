"""Every module's tables, so Alembic and the tests see the whole schema."""


def import_all_models() -> None:
    import src.auth.models
    import src.idempotency
    import src.invitations.models
    import src.mail.models
    import src.sampleFileUpload.models
    import src.study.models  # noqa: F401
