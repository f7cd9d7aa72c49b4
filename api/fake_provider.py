"""Play the fake payment provider's webhook by hand (dev): sign a "succeeded"
notice for a payment the API opened and POST it to /v1/webhooks/payments.

    python -m api.fake_provider PAYMENT_ID AMOUNT [--url http://127.0.0.1:8080] [--secrets var/secrets.toml]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

from api.payments import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="send the fake provider's signed webhook for a payment")
    parser.add_argument("payment_id")
    parser.add_argument("amount", type=int, help="minor units, as opened")
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--secrets", type=Path, default=Path("var/secrets.toml"))
    args = parser.parse_args(argv)
    with args.secrets.open("rb") as fh:
        secret = str(tomllib.load(fh)["payment_webhook_secret"])
    body = json.dumps({"payment_id": args.payment_id, "amount": args.amount, "status": "succeeded"}).encode()
    stamp = str(int(time.time()))
    request = urllib.request.Request(
        f"{args.url}/v1/webhooks/payments", data=body, method="POST",
        headers={"Content-Type": "application/json", TIMESTAMP_HEADER: stamp,
                 SIGNATURE_HEADER: sign(secret, stamp, body)})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            sys.stdout.write(answer.read().decode() + "\n")
            return 0
    except urllib.error.HTTPError as err:
        sys.stderr.write(f"{err.code} {err.read().decode()}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
