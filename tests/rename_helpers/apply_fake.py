"""Subprocess for the kill -9 test: plan with the fake inspector, then apply (slowed by CKREG_RENAME_TEST_DELAY)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rename_helpers import fake_inspector  # noqa: E402

from ckreg.rename import apply_rename, plan_rename  # noqa: E402

plan = plan_rename(sys.argv[1], inspector=fake_inspector)
print(f"planned {len(plan.moves)}", flush=True)
apply_rename(plan)
print("done", flush=True)
