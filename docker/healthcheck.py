#!/usr/bin/env python3
"""Exit 0 when GET URL answers 2xx within the timeout, else 1. For HEALTHCHECK / compose `healthcheck:` tests.

Usage: healthcheck URL [TIMEOUT_SECONDS]   (images carry no curl; the standard library is enough)
"""

import sys
import urllib.error
import urllib.request


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    url = argv[1]
    timeout = float(argv[2]) if len(argv) == 3 else 3.0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - URL given by the operator
            return 0 if 200 <= response.status < 300 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"healthcheck {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
