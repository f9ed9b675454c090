"""Mail the app sends: the transactional outbox, its templates and the sender."""
