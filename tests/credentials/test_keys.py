"""Key format, entropy, hashing and the constant-time check."""

from __future__ import annotations

import ast
import hashlib
import inspect

from gateway.credentials import authenticator, keys


def test_generate_key_has_prefix_id_and_256_bit_secret() -> None:
    new = keys.generate_key()
    assert new.secret.startswith("mgw_")
    assert len(new.secret) == keys.KEY_LENGTH
    assert keys.parse_key_id(new.secret) == new.key_id
    secret_part = new.secret.split("_", 2)[2]
    assert len(secret_part) * 6 >= 256  # base64url: 6 bits per character
    assert new.hash == hashlib.sha256(new.secret.encode()).hexdigest()


def test_generate_key_never_repeats_in_1000_draws() -> None:
    drawn = [keys.generate_key() for _ in range(1000)]
    assert len({k.secret for k in drawn}) == 1000
    assert len({k.key_id for k in drawn}) == 1000


def test_new_key_repr_hides_the_secret() -> None:
    new = keys.generate_key()
    assert new.secret not in repr(new) and new.hash not in repr(new)


def test_parse_key_id_rejects_malformed_keys() -> None:
    good = keys.generate_key().secret
    for bad in ("", " ", good[:-1], good + "x", "sk_" + good[3:], good.upper(),
                good[:20] + "!" + good[21:], "x" * 1_000_000, "mgw_' OR 1=1 --",
                good.replace("_", ".", 1)):
        assert keys.parse_key_id(bad) is None


def test_matches_accepts_only_the_hashed_key() -> None:
    new = keys.generate_key()
    other = keys.generate_key()
    assert keys.matches(new.secret, new.hash)
    assert not keys.matches(other.secret, new.hash)


def test_key_check_uses_compare_digest_not_equality() -> None:
    """S5: the comparison of a presented key's hash is constant-time (static check)."""
    tree = ast.parse(inspect.getsource(keys.matches))
    calls = {ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    assert "hmac.compare_digest" in calls
    source = inspect.getsource(authenticator)
    assert "record.hash ==" not in source and "== record.hash" not in source
