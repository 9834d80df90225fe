"""admin.py HOST PORT DIR OP UID: what a key manager's administrator does to a key, through
PyKMIP's own client with the test PKI in DIR (client.crt owns the keys dekfs created).
OP: revoke | destroy | state. Prints the state name for `state`. Test tool only."""
import sys
import warnings

warnings.simplefilter("ignore")
from kmip.core import enums  # noqa: E402
from kmip.pie.client import ProxyKmipClient  # noqa: E402

host, port, d, op, uid = sys.argv[1:6]
c = ProxyKmipClient(hostname=host, port=int(port), cert=f"{d}/client.crt",
                    key=f"{d}/client.key", ca=f"{d}/ca.crt", config_file="/dev/null",
                    kmip_version=enums.KMIPVersion.KMIP_1_4)
with c:
    if op == "revoke":
        c.revoke(enums.RevocationReasonCode.CESSATION_OF_OPERATION, uid)
    elif op == "destroy":
        c.destroy(uid)
    elif op == "state":
        try:
            _, attrs = c.get_attributes(uid, ["State"])
            print(attrs[0].attribute_value.value.name)
        except Exception as e:  # the key is gone
            print("GONE", type(e).__name__)
    else:
        sys.exit(f"unknown op {op}")
