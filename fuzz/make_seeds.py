#!/usr/bin/env python3
"""Writes the seed corpus (corpus/<target>/seed-*) from the fixed fuzz keys in src/lib.rs.

Seeds are small and meaningful: valid inputs (so mutations start from the accepted path: a
cursor that opens, a token that verifies, a key with a good checksum) plus typical refusals.
Run again after changing a key or a format: python3 fuzz/make_seeds.py (needs python3-cryptography).
"""
import base64
import json
import os
import struct
import uuid
import zlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

HERE = os.path.dirname(os.path.abspath(__file__))
INSTANCE_KEY = bytes([0x5A] * 32)
SIGNING_SEED = bytes([7] * 32)
KID, ISSUER, AUDIENCE, NOW = "fuzz-key-1", "https://palisade.fuzz", "palisade", 1_800_000_000
CURSOR_CONTEXT = b"palisade-cursor-v1|org_00000000000000000000000000|fuzzed|amount|asc"
B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b58(data):
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = B58[r] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


def write(target, name, data):
    path = os.path.join(HERE, "corpus", target)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "seed-" + name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def cursor(record_id, key):
    body = json.dumps({"id": str(record_id), "key": key}, separators=(",", ":")).encode()
    nonce = bytes(range(12))
    return b64(b"\x01" + nonce + AESGCM(INSTANCE_KEY).encrypt(nonce, body, CURSOR_CONTEXT))


def jwt(header, claims):
    signing_input = b64(json.dumps(header, separators=(",", ":")).encode()) + "." + b64(
        json.dumps(claims, separators=(",", ":")).encode())
    signature = Ed25519PrivateKey.from_private_bytes(SIGNING_SEED).sign(signing_input.encode())
    return signing_input + "." + b64(signature)


rid = uuid.UUID("0190f3c2-7b1e-7c3d-8a4b-5c6d7e8f9a0b")
claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "usr_01j0000000000000000000000", "sid": "ses_01j0000000000000000000000",
          "amr": ["pwd"], "auth_time": NOW - 60, "iat": NOW - 60, "exp": NOW + 3600, "jti": "j1"}
header = {"alg": "EdDSA", "typ": "at+jwt", "kid": KID}

# list_params: raw query strings.
for i, q in enumerate([
    "filter[title]=report&sort=-amount&limit=20",
    "filter[amount][gte]=10.5&filter[amount][lt]=1e3&filter[open]=true",
    "filter[count][in]=1,2,3&filter[title][ne]=x&sort=count",
    "filter[meta]=null&filter[meta][gt]=3&sort=id&limit=200&cursor=abc",
    "filter[salary][gt]=1&sort=salary",
    "filter[title][like]=%25x&limit=0&filter[nope]=1&other=1",
    "filter[tags][in]=a,b&filter[title%5D%5Beq%5D=x&sort=-",
]):
    write("list_params", str(i), q)

# cursor: mode byte 0 = open this text; 1 = seal (16-byte id + JSON key) and reopen.
write("cursor", "open-valid-number", b"\x00" + cursor(rid, 12.5).encode())
write("cursor", "open-valid-string", b"\x00" + cursor(rid, "b\u00e9ta").encode())
write("cursor", "open-valid-null", b"\x00" + cursor(rid, None).encode())
write("cursor", "open-garbage", b"\x00" + b"AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHw")
write("cursor", "roundtrip-float", b"\x01" + rid.bytes + b"0.30000000000000004")
write("cursor", "roundtrip-object", b"\x01" + rid.bytes + json.dumps({"a": [1, -2.5e-300, "x", True, None]}).encode())
write("cursor", "roundtrip-bigint", b"\x01" + rid.bytes + b"18446744073709551615")

# collection_schema: schema documents (bare or as a request body).
schemas = {
    "typical": {"type": "object", "properties": {"title": {"type": "string", "minLength": 1, "maxLength": 200},
                "amount": {"type": "number", "minimum": 0}, "salary": {"type": "number", "x-palisade-sensitive": True},
                "email": {"type": "string", "format": "email", "x-palisade-pii": True}}, "required": ["title"]},
    "body": {"name": "invoices", "schema": {"type": "object", "properties": {"n": {"type": "integer"}}}},
    "patterns": {"type": "object", "patternProperties": {"^x_[a-z]+$": {"type": "string", "pattern": "^(a+)+$"}},
                 "additionalProperties": False},
    "refs": {"type": "object", "$defs": {"p": {"type": "object", "properties": {"q": {"$ref": "#/$defs/p"}}}},
             "properties": {"p": {"$ref": "#/$defs/p"}}},
    "composition": {"type": "object", "properties": {"v": {"anyOf": [{"type": "string"}, {"type": "array",
                    "items": {"enum": [1, 2, "x"]}, "uniqueItems": True, "maxItems": 3}]},
                    "w": {"if": {"const": 1}, "then": {"minimum": 0}, "else": {"not": {"type": "null"}}}}},
    "remote-ref": {"type": "object", "$ref": "https://example.com/evil.json"},
    "dialect": {"type": "object", "$schema": "https://json-schema.org/draft/2020-12/schema",
                "unevaluatedProperties": False, "dependentRequired": {"a": ["b"]}},
    "bad-flag": {"type": "object", "properties": {"a": {"x-palisade-sensitive": "yes"}}},
}
for name, doc in schemas.items():
    write("collection_schema", name, json.dumps(doc))

# access_token: mode 0 = verify this text; 1 = sign these claims (JSON) with the real key and verify.
write("access_token", "valid", b"\x00" + jwt(header, claims).encode())
write("access_token", "expired", b"\x00" + jwt(header, {**claims, "exp": NOW - 1}).encode())
write("access_token", "wrong-typ", b"\x00" + jwt({**header, "typ": "JWT"}, claims).encode())
write("access_token", "alg-none", b"\x00" + (b64(json.dumps({"alg": "none", "typ": "at+jwt", "kid": KID}).encode())
      + "." + b64(json.dumps(claims).encode()) + ".").encode())
write("access_token", "hs256", b"\x00" + (b64(json.dumps({"alg": "HS256", "typ": "at+jwt", "kid": KID}).encode())
      + "." + b64(json.dumps(claims).encode()) + ".c2ln").encode())
write("access_token", "sign-valid", b"\x01" + json.dumps(claims).encode())
write("access_token", "sign-other-aud", b"\x01" + json.dumps({**claims, "aud": ["palisade", "x"]}).encode())
write("access_token", "sign-missing-sub", b"\x01" + json.dumps({k: v for k, v in claims.items() if k != "sub"}).encode())

# opaque_token: token texts (the first 16 bytes double as an org id for minting).
org = uuid.UUID("0190f3c2-0000-7000-8000-000000000001").bytes
write("opaque_token", "invitation", "pin_" + b64(org + bytes(range(32))))
write("opaque_token", "invitation-short", "pin_" + b64(org))
write("opaque_token", "session", "pss_" + b64(bytes(range(32))))
write("opaque_token", "refresh", "prf_" + b64(bytes(range(1, 33))))
write("opaque_token", "reset", "prt_" + b64(bytes(32)) + "==")

# api_key: keys as text; the first byte also picks the env length for minting.
def api_key(env, random):
    body = "pal_" + env + "_" + b58(random)
    return body + b58(struct.pack(">I", zlib.crc32(body.encode()))).rjust(6, "1")


write("api_key", "live", api_key("live", bytes(range(7, 39))))
write("api_key", "staging", api_key("staging", bytes(range(100, 132))))
write("api_key", "typo", api_key("live", bytes(range(7, 39)))[:-1] + "z")
write("api_key", "mint-input", b"\x04test" + bytes(range(40)))
write("api_key", "not-a-key", "pss_abcdef")

# cookies: Cookie header lines (several lines = several headers).
write("cookies", "session", "palisade_session=pss_" + b64(bytes(range(32))) + "; palisade_csrf=" + "ab" * 32)
write("cookies", "form", "palisade_form=" + "0123456789abcdef" * 4 + "; theme=dark")
write("cookies", "two-headers", "a=1; palisade_session=x\npalisade_session=y; b=\"q\"")
write("cookies", "odd", "=novalue; ;; palisade_session=\"quoted\"; spaced = v ; palisade_form=ZZ")

# import_users: import files.
bcrypt = "$2b$04$abcdefghijklmnopqrstuuGq6K7Ng8b0NQh4jvM5QFLhxV8TdD7Dy"
write("import_users", "valid", json.dumps([{"email": "ada@example.com", "name": "Ada Lovelace", "password_hash": bcrypt},
      {"email": "Bob@Example.COM", "name": "Bob", "password_hash": bcrypt.replace("2b", "2y"), "email_verified": True}]))
write("import_users", "problems", json.dumps([{"email": "nope", "name": "", "password_hash": "plain"},
      {"email": "ada@example.com", "name": "A", "password_hash": bcrypt, "admin": True}]))
write("import_users", "duplicate", json.dumps([{"email": "a@example.com", "name": "A", "password_hash": bcrypt},
      {"email": "A@example.com", "name": "B", "password_hash": bcrypt}]))
write("import_users", "not-array", "{}")
