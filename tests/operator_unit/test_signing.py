"""The event signing keys as PEM (joyn_operator.signing), read back the way the server reads
them (scim_server/events/keys.py), so both sides agree on the files."""

from joyn_operator.signing import (
    clean_pem,
    is_private_key,
    new_private_key,
    public_pem,
    split_pem,
)

from scim_server.events.keys import parse_keys


def test_a_new_key_is_a_p256_pkcs8_private_key_the_server_signs_with():
    pem = new_private_key()
    assert pem.startswith("-----BEGIN PRIVATE KEY-----\n") and pem.endswith("-----\n")
    [key] = parse_keys(pem.encode())
    assert key.private and key.alg == "ES256"
    assert new_private_key() != pem


def test_the_public_half_is_spki_and_names_the_same_key():
    pem = new_private_key()
    public = public_pem(pem)
    assert public.startswith("-----BEGIN PUBLIC KEY-----\n") and "PRIVATE" not in public
    [private_key] = parse_keys(pem.encode())
    [public_key] = parse_keys(public.encode())
    assert public_key.kid == private_key.kid and not public_key.private


def test_only_an_ec_private_key_the_server_can_sign_with_is_usable():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    def pkcs8(key) -> str:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()).decode()
    assert is_private_key(new_private_key())
    assert is_private_key(pkcs8(ec.generate_private_key(ec.SECP384R1())))
    assert not is_private_key(pkcs8(ec.generate_private_key(ec.SECP521R1())))
    assert not is_private_key(pkcs8(rsa.generate_private_key(65537, 2048)))
    assert not is_private_key(public_pem(new_private_key()))
    assert not is_private_key("-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----")


def test_pem_files_split_into_blocks_and_read_back_whole():
    a, b = public_pem(new_private_key()), public_pem(new_private_key())
    assert split_pem(a + b) == [a, b]
    assert split_pem(f"\n{a.strip()}\n\n  {b}") == [a, b]
    assert split_pem("") == [] and split_pem("no pem here") == []
    assert [k.kid for k in parse_keys((a + b).encode())] == [
        parse_keys(a.encode())[0].kid, parse_keys(b.encode())[0].kid]
    assert clean_pem(f"  {a}\n\n") == a and clean_pem(" ") == ""
