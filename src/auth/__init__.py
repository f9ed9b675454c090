"""Users, sessions, tokens, passwords and roles."""
