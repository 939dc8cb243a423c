#!/usr/bin/env python3
"""Writes the hand-written seed inputs into fuzz/corpus/<target>/seed-*.

Run from anywhere: python3 fuzz/seeds/make_seeds.py. Layouts: src/fuzzing.rs.
"""
import base64
import hashlib
import hmac
import os
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
CORPUS = ROOT / "corpus"
REPO = ROOT.parent

KEY = bytes([7] * 32)  # the key authgate::fuzzing uses


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def token(prefix, body=bytes(range(32))):
    head = prefix + "_" + b64u(body)
    check = hmac.new(KEY, head.encode(), hashlib.sha256).digest()[:6]
    return head + b64u(check)


def write(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / f"seed-{name}").write_bytes(data)


# ---- token_headers: flags byte, then `?query` / `name: value` lines ----
AT = token("agat")
both = b"\x04"  # bits 1-2 = 2: both headers; bit 0 = 0: query refused
both_q = b"\x05"
for name, flags, body in [
    ("bearer", both, f"authorization: Bearer {AT}"),
    ("bearer-case", both, f"authorization: bEaReR   {AT}  "),
    ("x-access-token", both, f"x-access-token: {AT}"),
    ("same-twice", both, f"authorization: Bearer {AT}\nx-access-token: {AT}"),
    ("differ", both, f"authorization: Bearer a\nx-access-token: b"),
    ("two-auth", both, "authorization: Bearer a\nauthorization: Bearer a"),
    ("basic", both, "authorization: Basic YTpi"),
    ("empty-bearer", both, "authorization: Bearer "),
    ("no-space", both, "authorization: Bearer"),
    ("query-refused", both, "?x=1&access_token=abc"),
    ("query-allowed", both_q, "?x=1&access_token=abc&access_token=def"),
    ("query-empty", both_q, "?access_token=&access_token=abc"),
    ("query-and-header", both_q, f"?access_token={AT}\nauthorization: Bearer {AT}"),
    ("only-x", b"\x02", f"authorization: Bearer {AT}"),
    ("only-auth", b"\x00", f"x-access-token: {AT}"),
    ("reversed", b"\x06", "x-access-token: a\nauthorization: Bearer b"),
]:
    write("token_headers", name, flags + body.encode())
write("token_headers", "non-ascii", b"\x04x-access-token: caf\xc3\xa9")
write("token_headers", "obs-text", b"\x04authorization: Bearer \xff\xfe")
write("token_headers", "tab", b"\x04authorization: Bearer\tabc")
write("token_headers", "nul", b"\x04authorization: Bearer a\x00b")
write("token_headers", "long", b"\x04authorization: Bearer " + b"A" * 8000)

# ---- token_codec: selector byte (bits 0-1 kind, (>>2)%3 mode), then data ----
for i, p in enumerate(["agat", "agrt", "agac", "agcs"]):
    write("token_codec", f"valid-{p}", bytes([i]) + token(p).encode())
    write("token_codec", f"derive-{p}", bytes([4 | i, 10, ord("A")]) + b"client|alice|loc-1||0")
t = token("agat")
write("token_codec", "wrong-kind", b"\x01" + t.encode())
write("token_codec", "short", b"\x00" + t[:-1].encode())
write("token_codec", "long", b"\x00" + (t + "A").encode())
write("token_codec", "bad-char", b"\x00" + (t[:10] + "!" + t[11:]).encode())
write("token_codec", "flipped", b"\x00" + (t[:10] + ("B" if t[10] == "A" else "A") + t[11:]).encode())
write("token_codec", "utf8", b"\x00" + ("agat_" + "\u00e9" * 25 + "A").encode())
write("token_codec", "padding", b"\x00" + (t[:-2] + "==").encode())
write("token_codec", "prefix-only", b"\x00agat_")
write("token_codec", "edit-check", bytes([4, 55, ord("_")]) + b"seed")
write("token_codec", "edit-prefix", bytes([5, 0, ord("b")]) + b"seed")
write("token_codec", "sign", b"\x08csrf\nsession-1|client")
write("token_codec", "sign-empty", b"\x08")

# ---- scope: one scope, or two separated by \n ----
scopes = {
    "hubic": "usage.r,account.r,links.wd",
    "hubrise": "location[orders.write,customer_list.write],profile",
    "hubrise-trailing": "location[orders.write,customer_list.write,]",
    "empty-level": "account[],profile",
    "hubspot": "crm.objects.contacts.read crm.objects.contacts.write oauth",
    "names": "files.ui_manage a.b.c links.rr links.R links.READ",
    "messy": " ,a.dw,,l[x.r y.delete x.w],  ",
    "merge": "a.delete a.read b.rw,c a.w",
    "words-merge": "a.read a.wd",
    "level-dots": "loc.v2[ orders.write  customer_list.rw ] x",
    "empty": "",
    "seps": " , , ",
    "nested": "location[account[]]",
    "two-levels": "a[] b[]",
    "unbalanced": "l[a.r]]",
    "open": "location[orders.write",
    "bad-grant": "location[profile]",
    "empty-resource": ".r",
    "empty-name": "[a.r]",
    "missing-sep": "l[a.r]b.w",
    "quote": 'a"b',
    "backslash": "a\\b",
    "nul": "a\x00",
    "non-ascii": "caf\u00e9",
}
for name, s in scopes.items():
    write("scope", name, s)
pairs = {
    "intersect-hubic": ("usage.r,account.r,links.wd", "links.rwd account.r usage.r"),
    "intersect-level": ("location[orders.write,customer_list.write],profile", "location[orders.rw],profile"),
    "intersect-empty-level": ("account[]", "account[x.r]"),
    "intersect-other-level": ("account[]", "location[]"),
    "intersect-words": ("crm.c.read crm.c.write crm.c.delete", "crm.c.rd"),
    "intersect-names": ("links.rr profile", "links.r profile"),
    "subset-level": ("l[]", "l[a.r]"),
}
for name, (a, b) in pairs.items():
    write("scope", name, a + "\n" + b)
write("scope", "max-len", "a" * 2048)
write("scope", "too-long", "a" * 2049)
write("scope", "max-items", " ".join(f"n{i}" for i in range(64)))
write("scope", "too-many", " ".join(f"n{i}" for i in range(65)))
write("scope", "level-max", "l[" + ",".join(f"r{i}.r" for i in range(63)) + "]")
# Known limitation (fuzz/README.md): these parse, but their Display does not parse back.
write("scope", "display-too-many", " ".join(f"r{i}.read r{i}.wd" for i in range(32)))
r = "x" * 677
write("scope", "display-too-long", f"{r}.read {r}.w {r}.d")

# ---- form: the body ----
forms = {
    "client-credentials": "grant_type=client_credentials&scope=usage.r%2Caccount.r&client_id=c&client_secret=s",
    "code": "grant_type=authorization_code&code=agac_x&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&code_verifier=abc",
    "plus": "scope=a+b&empty=",
    "repeat": "a=1&b=2&a=3",
    "repeat-quoted": "%22x%22=1&%22x%22=2",
    "repeat-empty": "a=&a=",
    "bad-escape": "a=%zz&b=%2&c=%",
    "non-utf8": "a=%ff%fe&%c3%28=1",
    "nul": "a=%00&b=\x00",
    "no-equals": "a&b&c=",
    "ampersands": "&&&=&",
    "long-name": "n" * 100 + "=1&" + "n" * 100 + "=2",
}
for name, f in forms.items():
    write("form", name, f)
write("form", "raw-non-utf8", b"a=\xff&\xfe=1")

# ---- client_basic: byte 0 even = header value; odd = id:secret text ----
for name, v in {
    "basic": "Basic " + base64.b64encode(b"client:secret").decode(),
    "case": "bAsIc " + base64.b64encode(b"a:b").decode(),
    "encoded": "Basic " + base64.b64encode(b"my%20id:p%3Ass+word").decode(),
    "bad-b64": "Basic ***",
    "no-colon": "Basic " + base64.b64encode(b"no-colon").decode(),
    "empty-id": "Basic " + base64.b64encode(b":secret").decode(),
    "non-utf8": "Basic " + base64.b64encode(b"\xff:\xfe").decode(),
    "bearer": "Bearer abc",
    "no-space": "Basic",
    "padding": "Basic YTpi=",
    "spaces": "Basic    " + base64.b64encode(b"a:b").decode() + "   ",
}.items():
    write("client_basic", name, b"\x00" + v.encode())
for name, v in {
    "raw-plain": b"api_hubic_123:agcs_secret",
    "raw-plus": b"a+b:c%zz",
    "raw-percent": b"%41%3A:x",
    "raw-bad-percent": b"%ff:x",
    "raw-colons": b"a:b:c",
    "raw-empty-id": b":x",
    "raw-nul": b"a\x00b:c",
}.items():
    write("client_basic", name, b"\x01" + v)

# ---- config: TOML text [NUL env lines] ----
# A PHC string check_phc accepts (password_env would run argon2 on every execution).
PHC = "$argon2id$v=19$m=19456,t=2,p=1$" + base64.b64encode(b"saltsalt").decode().rstrip("=") + "$" + base64.b64encode(bytes(32)).decode().rstrip("=")
for p in sorted((REPO / "config").rglob("*.toml")) + [REPO / "deploy/compose/authgate.toml"]:
    text = p.read_text()
    text = re.sub(r'password_env = "[A-Z_]*"', f'password_hash = "{PHC}"', text)
    env = ["AUTHGATE_TLS__SELF_SIGNED_IF_MISSING=true"]
    env += [f"{v}=agcs_{v.lower()}" for v in sorted(set(re.findall(r'secret_env = "([A-Z_]*)"', text)))]
    write("config", "file-" + p.parent.name + "-" + p.stem, text + "\x00" + "\n".join(env))
minimal = '[server]\nhttps = "off"\nhttp = "127.0.0.1:8080"\nhttp_mode = "serve"\n\n[[route]]\npath = "/api"\nupstream = "http://127.0.0.1:9000"\npublic = true\n'
write("config", "minimal", minimal)
write("config", "minimal-env", minimal + "\x00AUTHGATE_ROUTE__0__UPSTREAM=http://127.0.0.1:9001\nAUTHGATE_ROUTE__1__PATH=/x\nAUTHGATE_ROUTE__1__UPSTREAM=http://b\nAUTHGATE_ROUTE__1__PUBLIC=true\nAUTHGATE_SERVER__MAX_CONNECTIONS=10")
write("config", "env-gap", minimal + "\x00AUTHGATE_ROUTE__5__PATH=/x")
write("config", "env-empty-seg", minimal + "\x00AUTHGATE_SERVER____X=1")
write("config", "env-not-table", minimal + "\x00AUTHGATE_SERVER__HTTPS__X=1")
write("config", "route-host", minimal + 'host = "API.Example"\n')
write("config", "route-slashes", minimal.replace('path = "/api"', 'path = "//"'))
write("config", "route-trailing", minimal.replace('path = "/api"', 'path = "/api///"'))
write("config", "route-host-port", minimal + 'host = "[::1]:8080"\n')
write("config", "client", minimal + '\n[[client]]\nid = "c"\nsecret_hash = "sha256:' + "0" * 64 + '"\ngrants = ["authorization_code"]\nredirect_uris = ["https://app.example/cb"]\nscopes = "usage.r,links.wd"\n')
write("config", "syntax", "[server\nhttps = ")
write("config", "unknown-key", minimal + "bogus = 1\n")

# ---- redirect_uri: one URI per line ----
for name, v in {
    "https": "https://app.example/cb",
    "query": "https://app.example/cb?x=1",
    "oob": "urn:ietf:wg:oauth:2.0:oob",
    "fragment": "https://app.example/cb#frag",
    "relative": "/relative",
    "custom-scheme": "com.example.app://callback",
    "loopback": "http://127.0.0.1:8765/cb\nhttp://[::1]:8765/cb",
    "userinfo": "https://user:pw@app.example/cb",
    "utf8-path": "https://app.example/caf\u00e9",
    "percent": "https://app.example/a%20b?c=%zz",
    "empty": "",
    "several": "https://a.example/1\nhttps://b.example/2\nurn:ietf:wg:oauth:2.0:oob",
    "braces": 'https://app.example/{"a":1}',
}.items():
    write("redirect_uri", name, v)

# ---- canonical_path: the path ----
for name, v in {
    "plain": "/v1/location/orders",
    "unreserved": "/v1/location/%6Frders",
    "lower-escape": "/a%20b/%c3%a9",
    "upper-escape": "/a%20b",
    "dotdot": "/api/../admin",
    "dot": "/a/./b",
    "enc-dot": "/api/%2e%2E/x",
    "enc-dot-mixed": "/x/.%2e",
    "enc-dot-decoded": "/a/%2E",
    "three-dots": "/a/...",
    "enc-three-dots": "/a/%2e%2e%2e",
    "double-slash": "/v1/location//orders",
    "leading-double": "//v1/location",
    "enc-slash": "/v1/location/x%2F..%2Forders",
    "semicolon": "/links;x",
    "enc-backslash": "/a/%5c",
    "raw-backslash": "/public/..\\private",
    "enc-nul": "/a/%00",
    "bad-escape": "/a/%zz",
    "short-escape": "/a/%2",
    "trailing-percent": "/a/%",
    "double-enc": "/a/%252e%252e/b",
    "enc-dot-to-dotdot": "/a/%2e./b",
    "utf8": "/caf\u00e9/%41",
    "utf8-escape-split": "/%\u00e9",
    "well-known": "/.well-known/oauth-authorization-server",
    "long": "/" + "a%41" * 2000,
    "empty": "",
    "root": "/",
}.items():
    write("canonical_path", name, v)

# ---- host: the Host header value ----
for name, v in {
    "name": "a.example",
    "port": "a.example:8443",
    "v6": "[::1]",
    "v6-port": "[::1]:8443",
    "v6-open": "[::1",
    "v6-junk": "[::1]x:80",
    "colons": "a:b:c",
    "empty": "",
    "colon": ":",
    "upper": "A.Example:443",
    "trailing-dot": "a.example.",
    "userinfo": "user@a.example:80",
    "utf8": "caf\u00e9.example",
    "brackets": "]]:[[",
}.items():
    write("host", name, v)

if __name__ == "__main__":
    for d in sorted(CORPUS.iterdir()):
        print(d.name, len(list(d.iterdir())))
