"""Test program: prints its argv as JSON and which secret variables it can see (never their values)."""

import json
import os
import sys
import time

print("ARGV " + json.dumps(sys.argv[1:], ensure_ascii=False), flush=True)
seen = {k: bool(os.environ.get(k)) for k in ("HF_TOKEN", "WANDB_API_KEY")}
print("SECRETS_VISIBLE " + json.dumps(seen), flush=True)
time.sleep(float(os.environ.get("PRINT_ARGV_SLEEP", "0")))  # a run that lasts a while, for tests that watch it
