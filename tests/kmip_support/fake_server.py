"""fake_server.py PORT DIR: a KMIP-over-TLS server (test PKI in DIR, client certificates
required) that answers Create and Activate like a real one, but Encrypt without the GCM tag:
what PyKMIP sends back for a KMIP 1.2 request, whose AAD it also silently dropped. Test only."""
import socket
import ssl
import struct
import sys

port, d = int(sys.argv[1]), sys.argv[2]


def item(tag, typ, value):
    n = len(value)
    return struct.pack(">I", tag)[1:] + bytes([typ]) + struct.pack(">I", n) + value + b"\0" * (-n % 8)


def struct_(tag, *items):
    return item(tag, 0x01, b"".join(items))


def enum(tag, v):
    return item(tag, 0x05, struct.pack(">I", v))


def integer(tag, v):
    return item(tag, 0x02, struct.pack(">i", v))


def text(tag, s):
    return item(tag, 0x07, s.encode())


def response(op, payload):
    header = struct_(0x42007A,
                     struct_(0x420069, integer(0x42006A, 1), integer(0x42006B, 4)),
                     item(0x420092, 0x09, struct.pack(">q", 0)),
                     integer(0x42000D, 1))
    batch = struct_(0x42000F, enum(0x42005C, op), enum(0x42007F, 0), struct_(0x42007C, *payload))
    return struct_(0x42007B, header, batch)


def op_of(req):
    at = req.find(bytes.fromhex("42005c0500000004"))
    return struct.unpack(">I", req[at + 8:at + 12])[0] if at >= 0 else 0


def read_exact(s, n):
    b = b""
    while len(b) < n:
        chunk = s.recv(n - len(b))
        if not chunk:
            raise EOFError
        b += chunk
    return b


ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(f"{d}/server.crt", f"{d}/server.key")
ctx.load_verify_locations(f"{d}/ca.crt")
ctx.verify_mode = ssl.CERT_REQUIRED
srv = socket.create_server(("127.0.0.1", port))
while True:
    conn, _ = srv.accept()
    try:
        with ctx.wrap_socket(conn, server_side=True) as s:
            while True:
                h = read_exact(s, 8)
                req = h + read_exact(s, struct.unpack(">I", h[4:])[0])
                op = op_of(req)
                uid = text(0x420094, "1")
                if op == 0x01:
                    out = response(op, [enum(0x420057, 2), uid])
                elif op == 0x12:
                    out = response(op, [uid])
                else:
                    out = response(op, [uid, item(0x4200C2, 0x08, b"\x55" * 56)])
                s.sendall(out)
    except (EOFError, OSError, ssl.SSLError):
        pass
