"""The command line every SDK script shares: `SCRIPT BASE_URL API_KEY MODE [MODE...]`.

Each mode is one call through the SDK; its result is printed as one JSON line
(`{"mode": ..., "text": ..., "pieces": [...], ...}`) so that control/tests/sdk.rs can assert on
it. Any SDK error ends the script with a non-zero exit and the traceback on stderr.
"""

import json
import sys
from typing import Callable, Dict

# (base_url, api_key) -> what the call returned, as JSON-able values.
Mode = Callable[[str, str], dict]


def run(modes: Dict[str, Mode]) -> None:
    if len(sys.argv) < 4:
        names = "|".join(modes)
        sys.exit(f"usage: {sys.argv[0]} BASE_URL API_KEY ({names})...")
    base_url, api_key, wanted = sys.argv[1], sys.argv[2], sys.argv[3:]
    unknown = [mode for mode in wanted if mode not in modes]
    if unknown:
        sys.exit(f"unknown mode(s) {unknown}; known: {list(modes)}")
    for mode in wanted:
        result = modes[mode](base_url, api_key)
        print(json.dumps({"mode": mode, **result}), flush=True)
