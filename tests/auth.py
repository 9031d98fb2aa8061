"""The signing key and tokens the tests use (real tokens, checked by the real interceptor)."""

from services.platform.auth import mint

AUTH_KEY = b"test-signing-key"


def token(role: str = "admin", name: str = "tester") -> str:
    return mint(AUTH_KEY, name, role)
