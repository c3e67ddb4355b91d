"""A TLS listener that is not the user's server: another user's, on the port the user's server
had on a cluster node (the Slurm spawner's impostor test).

    python3 impostor_tls.py PORT CERT KEY RECORD

Serves TLS on 0.0.0.0:PORT with its own certificate and appends every byte it receives after a
handshake to RECORD (a file the test reads: it must stay empty of the server's token). Writes
"listening" to RECORD.ready once bound. Runs until killed.
"""

import socket
import ssl
import sys
import threading

port, cert, key, record = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
ctx.set_alpn_protocols(["http/1.1", "x-hub-node-agent/1"])
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", port))
srv.listen(16)
with open(record + ".ready", "w") as f:
    f.write("listening\n")


def serve(conn):
    try:
        with ctx.wrap_socket(conn, server_side=True) as tls:
            while True:
                data = tls.recv(65536)
                if not data:
                    return
                with open(record, "ab") as f:
                    f.write(data)
    except (ssl.SSLError, OSError) as e:
        with open(record + ".errors", "a") as f:
            f.write(f"{e}\n")


while True:
    conn, _ = srv.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
