"""The worker protocol: one JSON request on stdin, one answer line on stdout tagged ANSWER_TAG (toolchains print
freely). Run by a toolchain's own Python: imports nothing of mobiclass."""
import json
import sys

ANSWER_TAG = "MOBICLASS-ANSWER "


def request() -> dict:
    return json.loads(sys.stdin.read())


def answer(value: dict) -> None:
    sys.stdout.write("\n" + ANSWER_TAG + json.dumps(value) + "\n")
    sys.stdout.flush()
