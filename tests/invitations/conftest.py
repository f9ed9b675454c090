"""The study tests' users: alice, an owner, signed in."""

from tests.study.conftest import alice, alice_headers

__all__ = ["alice", "alice_headers"]
