"""The check helper of the Python client scripts (run as `python SCRIPT.py`, so this folder is on
`sys.path`): `check` prints `ok NAME` per passed check and raises AssertionError naming a failed
one; `done` prints the `### done N checks` line the Rust side looks for.
"""

count = 0


def check(name, cond, detail=""):
    global count
    if not cond:
        raise AssertionError(f"{name}: {detail}")
    count += 1
    print(f"ok {name}", flush=True)


def done(suffix=""):
    print(f"### done {count} checks{' ' + suffix if suffix else ''}", flush=True)
