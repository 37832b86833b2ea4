"""Writes a throwaway CA and localhost leaves for the TLS measurements:
DIR/ca.pem, and DIR/KIND.pem + DIR/KIND.key for each KIND given (ec, rsa).
Made with tests/integration/tlsca.py, like the tests' certificates.

    /usr/bin/python3 perf/results/tls/make_certs.py DIR ec [rsa]
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3] / "tests" / "integration"))
from tlsca import TestCA  # noqa: E402

out = pathlib.Path(sys.argv[1])
ca = TestCA(out)
for kind in sys.argv[2:]:
    leaf = ca.issue("localhost", key=kind)
    (out / f"{kind}.pem").write_bytes(leaf.cert_path.read_bytes())
    (out / f"{kind}.key").write_bytes(leaf.key_path.read_bytes())
